"""Struct layout of the running kernel, read from its BTF.

The BPF collectors read kernel structs (``task_struct``, ``mm_struct``,
``vm_area_struct``, ``ma_state`` ...) through raw pointers, so they need the
member offsets of the kernel that is running *now*.  Headers on disk describe
some other build, and several of these structs use ``__randomize_layout``, so
the only trustworthy source is the kernel's own BTF in
``/sys/kernel/btf/vmlinux``.  This module parses that blob directly (stdlib
only, no bpftool or libbpf at run time) and answers ``offsetof`` /
``sizeof``-style questions.

Format reference: Documentation/bpf/btf.rst in the kernel tree.  The blob is

* a header: ``magic(u16)=0xeB9F version(u8) flags(u8) hdr_len(u32)
  type_off(u32) type_len(u32) str_off(u32) str_len(u32)``, the section
  offsets being relative to the end of the header (``hdr_len``);
* the type section: a sequence of ``struct btf_type`` records
  (``name_off, info, size_or_type``: three u32), each followed by
  kind-specific data; type ids are implicit, counted from 1 (id 0 is
  ``void``);
* the string section: NUL-terminated names addressed by offset.

Loading scans the type section once to record where each type starts and to
index struct/union names; members are only looked at when asked for.

Example::

    btf = Btf.load()
    btf.offsetof("task_struct", "mm")
    btf.offsetof("mm_struct", "mm_mt.ma_root")
    btf.sizeof("vm_area_struct")
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "BTF_MAGIC",
    "VMLINUX_BTF",
    "Btf",
    "BtfError",
]

BTF_MAGIC = 0xEB9F
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

# BTF_KIND_* from include/uapi/linux/btf.h.
KIND_UNKN = 0
KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

_KIND_NAMES = {
    KIND_UNKN: "void",
    KIND_INT: "int",
    KIND_PTR: "pointer",
    KIND_ARRAY: "array",
    KIND_STRUCT: "struct",
    KIND_UNION: "union",
    KIND_ENUM: "enum",
    KIND_FWD: "forward declaration",
    KIND_TYPEDEF: "typedef",
    KIND_VOLATILE: "volatile",
    KIND_CONST: "const",
    KIND_RESTRICT: "restrict",
    KIND_FUNC: "function",
    KIND_FUNC_PROTO: "function prototype",
    KIND_VAR: "variable",
    KIND_DATASEC: "datasec",
    KIND_FLOAT: "float",
    KIND_DECL_TAG: "decl tag",
    KIND_TYPE_TAG: "type tag",
    KIND_ENUM64: "enum64",
}

# Size, in u32 words, of the data that follows each kind's 12-byte
# btf_type: (fixed words, words per vlen entry).  Every record is a multiple
# of 4 bytes, which is what lets the loader walk the section as an array of
# u32 instead of calling struct.unpack per field.
_TRAILER_WORDS: dict[int, tuple[int, int]] = {
    KIND_INT: (1, 0),  # u32 encoding/offset/bits
    KIND_PTR: (0, 0),
    KIND_ARRAY: (3, 0),  # struct btf_array {type, index_type, nelems}
    KIND_STRUCT: (0, 3),  # struct btf_member {name_off, type, offset}
    KIND_UNION: (0, 3),
    KIND_ENUM: (0, 2),  # struct btf_enum {name_off, val}
    KIND_FWD: (0, 0),
    KIND_TYPEDEF: (0, 0),
    KIND_VOLATILE: (0, 0),
    KIND_CONST: (0, 0),
    KIND_RESTRICT: (0, 0),
    KIND_FUNC: (0, 0),
    KIND_FUNC_PROTO: (0, 2),  # struct btf_param {name_off, type}
    KIND_VAR: (1, 0),  # struct btf_var {linkage}
    KIND_DATASEC: (0, 3),  # struct btf_var_secinfo {type, offset, size}
    KIND_FLOAT: (0, 0),
    KIND_DECL_TAG: (1, 0),  # struct btf_decl_tag {component_idx}
    KIND_TYPE_TAG: (0, 0),
    KIND_ENUM64: (0, 3),  # struct btf_enum64 {name_off, val_lo32, val_hi32}
}

# Kinds that only qualify another type: layout questions look straight
# through them ("const struct foo" has the layout of "struct foo").
_TRANSPARENT = frozenset(
    {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}
)
_COMPOSITE = frozenset({KIND_STRUCT, KIND_UNION})

# BTF does not record the pointer width.  mmtrace only runs on 64-bit
# kernels (x86_64, arm64), where it is 8.
_POINTER_SIZE = 8

# Bound on typedef/const/... chains, so a corrupt blob with a cycle raises
# instead of looping forever.
_MAX_CHAIN = 64

# struct btf_header fields we know; the byte order prefix is added once the
# magic has told us which it is.
_HEADER_FMT = "HBBIIIII"
_HEADER_SIZE = struct.calcsize("<" + _HEADER_FMT)  # 24

_T = TypeVar("_T")


class BtfError(LookupError):
    """A type or member is missing, unsuitable, or the BTF blob is malformed."""


class _Member:
    """One struct/union member as found by a lookup (internal)."""

    __slots__ = ("name", "type_id", "bit_offset", "bitfield_size")

    def __init__(self, name: str, type_id: int, bit_offset: int, bitfield_size: int):
        self.name = name
        self.type_id = type_id
        self.bit_offset = bit_offset  # from the start of the outermost struct
        self.bitfield_size = bitfield_size  # 0: not a bitfield


class Btf:
    """Parsed kernel BTF, answering struct layout questions.

    Build with :meth:`load` (a file, by default the running kernel's
    ``/sys/kernel/btf/vmlinux``) or :meth:`from_bytes`.  Only "base" BTF is
    supported: kernel-module BTF (``/sys/kernel/btf/<module>``) is split BTF
    that refers to vmlinux's types and strings and is rejected when one of
    those references is followed.

    Struct names are looked up as C tags: ``"mm_struct"`` means
    ``struct mm_struct`` (or a union of that name); a ``"struct "`` or
    ``"union "`` prefix restricts the kind.
    """

    def __init__(self, data: bytes) -> None:
        """Parse *data*; prefer :meth:`from_bytes`, which says the same."""
        self._data = bytes(data)
        self._parse()
        # (kind filter, name) -> candidate type ids; filled on demand.
        self._candidates_cache: dict[tuple[frozenset[int], str], list[int]] = {}

    # ------------------------------------------------------------------ load

    @classmethod
    def load(cls, path: str = VMLINUX_BTF) -> Btf:
        """Read and parse the BTF blob at *path* (default: the running kernel)."""
        with open(path, "rb") as f:
            data = f.read()
        try:
            return cls(data)
        except BtfError as e:
            raise BtfError(f"{path}: {e}") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Btf:
        """Parse a BTF blob held in memory."""
        return cls(data)

    def _parse(self) -> None:
        data = self._data
        if len(data) < _HEADER_SIZE:
            raise BtfError(f"BTF blob too short ({len(data)} bytes)")
        # The magic is written in the producer's byte order; reading it both
        # ways tells us which one that was.
        if struct.unpack_from("<H", data)[0] == BTF_MAGIC:
            endian = "<"
        elif struct.unpack_from(">H", data)[0] == BTF_MAGIC:
            endian = ">"
        else:
            raise BtfError(f"not a BTF blob (magic {data[:2].hex()}, want 0xeb9f)")
        (_, version, _flags, hdr_len, type_off, type_len, str_off, str_len) = (
            struct.unpack_from(endian + _HEADER_FMT, data)
        )
        if version != 1:
            raise BtfError(f"unsupported BTF version {version}")
        # hdr_len may exceed the 24 bytes we know (newer kernels can append
        # header fields); sections are addressed relative to it, so simply
        # skipping the unknown tail is correct.
        if hdr_len < _HEADER_SIZE:
            raise BtfError(f"BTF header length {hdr_len} < {_HEADER_SIZE}")
        type_start = hdr_len + type_off
        str_start = hdr_len + str_off
        if type_start + type_len > len(data) or str_start + str_len > len(data):
            raise BtfError("BTF section extends past the end of the blob")
        if type_off % 4 or type_len % 4:
            raise BtfError("BTF type section is not 4-byte aligned")
        if str_len and data[str_start + str_len - 1] != 0:
            raise BtfError("BTF string section is not NUL-terminated")
        self._str_start = str_start
        self._str_end = str_start + str_len

        # The whole type section as u32 words in host order: a C-speed
        # conversion that makes each later field access one index operation.
        words = array("I")
        if words.itemsize != 4:  # pragma: no cover - no such CPython platform
            raise BtfError("array('I') is not 32-bit on this platform")
        words.frombytes(data[type_start : type_start + type_len])
        if (endian == "<") != (sys.byteorder == "little"):
            words.byteswap()
        self._words = words

        # One pass over the records: where each type id starts (_index[id] =
        # word index of its btf_type; id 0 = void has no record) and which
        # ids carry struct/union names.  Member data is skipped, not read.
        index = array("I", [0])
        by_name_off: dict[int, list[int]] = {}
        # Lists indexed by kind: cheaper than dict lookups in the hot loop.
        trailer = [(0, 0)] * 32
        known = [False] * 32
        for kind, sizes in _TRAILER_WORDS.items():
            trailer[kind] = sizes
            known[kind] = True
        n = len(words)
        i = 0
        append = index.append
        while i < n:
            if i + 3 > n:
                raise BtfError("truncated btf_type at end of type section")
            info = words[i + 1]
            kind = (info >> 24) & 0x1F
            if not known[kind]:
                raise BtfError(
                    f"unknown BTF kind {kind} at type id {len(index)}; "
                    "this parser needs an update for a newer kernel"
                )
            append(i)
            if kind == KIND_STRUCT or kind == KIND_UNION:
                name_off = words[i]
                if name_off:
                    ids = by_name_off.get(name_off)
                    if ids is None:
                        by_name_off[name_off] = [len(index) - 1]
                    else:
                        ids.append(len(index) - 1)
            fixed, per = trailer[kind]
            i += 3 + fixed + per * (info & 0xFFFF)
        if i != n:
            raise BtfError("last BTF type record runs past the type section")
        self._index = index

        # Decode only the struct/union names (about 10k of ~130k types on a
        # distro kernel); everything else is read lazily.
        by_name: dict[str, list[int]] = {}
        for name_off, ids in by_name_off.items():
            by_name.setdefault(self._str(name_off), []).extend(ids)
        self._by_name = by_name

    # --------------------------------------------------------- raw accessors

    @property
    def type_count(self) -> int:
        """Number of types in the blob, not counting ``void`` (id 0)."""
        return len(self._index) - 1

    def _str(self, off: int) -> str:
        start = self._str_start + off
        if start >= self._str_end:
            raise BtfError(f"string offset {off} outside the string section")
        end = self._data.index(b"\0", start, self._str_end)
        return self._data[start:end].decode("utf-8", "replace")

    def _name_is(self, off: int, name: bytes) -> bool:
        # Compare in place instead of decoding every member name we pass.
        start = self._str_start + off
        return self._data.startswith(name, start) and (
            self._data[start + len(name) : start + len(name) + 1] == b"\0"
        )

    def typedef_id(self, name: str) -> int | None:
        """The type id of the typedef called *name*, or None.  For the
        ``btf_trace_<tracepoint>`` typedefs a BTF-typed raw tracepoint
        program (tp_btf) is loaded against (include/linux/tracepoint.h
        DECLARE_TRACE -> ``typedef void (*btf_trace_##call)(void *__data, proto)``)."""
        return self._named_id(name, KIND_TYPEDEF)

    def func_id(self, name: str) -> int | None:
        """The type id of the function (BTF_KIND_FUNC) called *name*, or None:
        what a kfunc call names (``BPF_PSEUDO_KFUNC_CALL``'s imm)."""
        return self._named_id(name, KIND_FUNC)

    def struct_id(self, name: str) -> int:
        """The type id of struct *name* (the sized definition); BtfError if none."""
        return self._candidates(f"struct {name}")[1][0]

    def _named_id(self, name: str, kind: int) -> int | None:
        # BTF strings are deduplicated: find the name's one offset, then the
        # records of that kind that carry it (no decoding of other names).
        if not name:
            return None
        pat = b"\0" + name.encode() + b"\0"
        at = self._data.find(pat, self._str_start - 1, self._str_end)
        if at < 0:
            return None
        off = at + 1 - self._str_start
        words = self._words
        for type_id, w in enumerate(self._index):
            if type_id and words[w] == off and (words[w + 1] >> 24) & 0x1F == kind:
                return type_id
        return None

    def _rec(self, type_id: int) -> int:
        """Word index of *type_id*'s btf_type record."""
        if not 0 < type_id < len(self._index):
            raise BtfError(
                f"type id {type_id} out of range (1..{len(self._index) - 1}); "
                "split (module) BTF needs its vmlinux base, which is unsupported"
            )
        return self._index[type_id]

    def _kind(self, type_id: int) -> int:
        if type_id == 0:
            return KIND_UNKN
        return (self._words[self._rec(type_id) + 1] >> 24) & 0x1F

    def _strip(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the real type."""
        for _ in range(_MAX_CHAIN):
            if type_id == 0:
                return 0
            w = self._rec(type_id)
            if (self._words[w + 1] >> 24) & 0x1F not in _TRANSPARENT:
                return type_id
            type_id = self._words[w + 2]
        raise BtfError(f"type chain too long (cycle?) at type id {type_id}")

    def _describe(self, type_id: int, depth: int = 0) -> str:
        """Human-readable name of a type, for error messages."""
        kind = self._kind(type_id)
        kname = _KIND_NAMES.get(kind, f"kind {kind}")
        if type_id == 0:
            return kname
        w = self._rec(type_id)
        if kind in (KIND_PTR, KIND_ARRAY):
            target = self._words[w + 3] if kind == KIND_ARRAY else self._words[w + 2]
            # depth bound: a corrupt blob could make pointers point in a cycle
            inner = self._describe(target, depth + 1) if depth < 8 else "..."
            return f"{'array of' if kind == KIND_ARRAY else 'pointer to'} {inner}"
        name_off = self._words[w]
        if name_off:
            return f"{kname} {self._str(name_off)}"
        return f"anonymous {kname}"

    def _type_size(self, type_id: int) -> int:
        """sizeof() of a type, through typedefs and modifiers."""
        for _ in range(_MAX_CHAIN):
            type_id = self._strip(type_id)
            kind = self._kind(type_id)
            if kind == KIND_PTR:
                return _POINTER_SIZE
            if kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM,
                        KIND_ENUM64, KIND_FLOAT, KIND_DATASEC):
                return self._words[self._rec(type_id) + 2]
            if kind == KIND_ARRAY:
                w = self._rec(type_id)
                elem, nelems = self._words[w + 3], self._words[w + 5]
                if nelems == 0:
                    return 0  # flexible array member
                return nelems * self._type_size(elem)
            raise BtfError(f"{self._describe(type_id)} has no size")
        raise BtfError(f"type chain too long (cycle?) at type id {type_id}")

    # ------------------------------------------------------- member lookup

    def _find_member(
        self, comp_id: int, name: bytes, base_bits: int, depth: int = 0
    ) -> _Member | None:
        """Find member *name* in struct/union *comp_id*, looking inside
        anonymous struct/union members the way C does (their members are
        accessed as if they belonged to the enclosing struct)."""
        if depth > _MAX_CHAIN:
            raise BtfError(f"anonymous members nested too deeply in type id {comp_id}")
        words = self._words
        w = self._rec(comp_id)
        info = words[w + 1]
        kflag = info >> 31
        vlen = info & 0xFFFF
        for m in range(w + 3, w + 3 + 3 * vlen, 3):
            m_name_off, m_type, m_off = words[m], words[m + 1], words[m + 2]
            if kflag:
                # kind_flag struct: offset packs bitfield size (bits 24-31)
                # and bit offset (bits 0-23).
                bit_off, bf_size = m_off & 0xFFFFFF, m_off >> 24
            else:
                bit_off, bf_size = m_off, 0
            if m_name_off:
                if not self._name_is(m_name_off, name):
                    continue
                if not kflag:
                    bf_size = self._int_bitfield_size(m_type)
                return _Member(name.decode(), m_type, base_bits + bit_off, bf_size)
            # Anonymous member: only an anonymous struct/union can contribute
            # names (an unnamed bitfield is padding).
            inner = self._strip(m_type)
            if self._kind(inner) in _COMPOSITE:
                found = self._find_member(inner, name, base_bits + bit_off, depth + 1)
                if found is not None:
                    return found
        return None

    def _int_bitfield_size(self, type_id: int) -> int:
        """Bitfield width of a member of a non-kind_flag struct, else 0.

        Without kind_flag, BTF encodes a bitfield as a member whose INT type
        has fewer bits than its storage (or a bit offset inside it).
        """
        type_id = self._strip(type_id)
        if self._kind(type_id) != KIND_INT:
            return 0
        w = self._rec(type_id)
        size, enc = self._words[w + 2], self._words[w + 3]
        bits, int_off = enc & 0xFF, (enc >> 16) & 0xFF
        if int_off or bits != size * 8:
            return bits
        return 0

    def _resolve_path(self, comp_id: int, struct_label: str, member: str) -> _Member:
        """Walk a dotted *member* path from struct *comp_id*."""
        if not member:
            raise BtfError("empty member name")
        parts = member.split(".")
        cur = comp_id
        base = 0
        found: _Member | None = None
        for n, part in enumerate(parts):
            if not part:
                raise BtfError(f"bad member path {member!r}")
            if n:
                assert found is not None
                if found.bitfield_size:
                    raise BtfError(
                        f"{struct_label}.{'.'.join(parts[:n])} is a bitfield, "
                        "it has no members"
                    )
                # Embedded structs are followed through typedefs and
                # qualifiers; pointers are not (that would be a second read,
                # which is the BPF program's business, not an offset).
                cur = self._strip(found.type_id)
                if self._kind(cur) not in _COMPOSITE:
                    raise BtfError(
                        f"{struct_label}.{'.'.join(parts[:n])} has type "
                        f"{self._describe(found.type_id)}, not an embedded "
                        f"struct or union: cannot look up {part!r} in it"
                        + (" (offsetof does not follow pointers)"
                           if self._kind(cur) == KIND_PTR else "")
                    )
                base = found.bit_offset
            found = self._find_member(cur, part.encode(), base)
            if found is None:
                where = struct_label if n == 0 else (
                    f"{self._describe(cur)} "
                    f"(at {struct_label}.{'.'.join(parts[:n])})"
                )
                raise BtfError(f"{where} has no member {part!r}")
        assert found is not None
        return found

    # --------------------------------------------------- struct name lookup

    def _candidates(self, name: str) -> tuple[str, list[int]]:
        """Type ids of the struct/union called *name*, and a label for it."""
        kinds = _COMPOSITE
        bare = name.strip()
        for prefix, kind in (("struct ", KIND_STRUCT), ("union ", KIND_UNION)):
            if bare.startswith(prefix):
                kinds = frozenset({kind})
                bare = bare[len(prefix):].strip()
                break
        key = (kinds, bare)
        ids = self._candidates_cache.get(key)
        if ids is None:
            ids = [t for t in self._by_name.get(bare, ()) if self._kind(t) in kinds]
            # A zero-sized definition (an empty struct) next to a real one is
            # a dedup leftover or placeholder; the sized one is what kernel
            # pointers point to.
            sized = [t for t in ids if self._words[self._rec(t) + 2]]
            if sized:
                ids = sized
            self._candidates_cache[key] = ids
        if not ids:
            what = "struct or union" if kinds == _COMPOSITE else (
                "struct" if KIND_STRUCT in kinds else "union")
            raise BtfError(f"no {what} named {bare!r} in BTF")
        return f"{_KIND_NAMES[self._kind(ids[0])]} {bare}", ids

    def _unanimous(self, name: str, fn: Callable[[int, str], _T]) -> _T:
        """Evaluate *fn* on every definition of struct *name*.

        The kernel can carry several unrelated structs with one tag (local
        structs in different .c files).  When all of them give the same
        answer the answer is right whichever one a pointer refers to;
        otherwise we refuse to guess.
        """
        label, ids = self._candidates(name)
        results: list[tuple[str, object]] = []
        for t in ids:
            try:
                results.append(("ok", fn(t, label)))
            except BtfError as e:
                results.append(("err", str(e)))
        first = results[0]
        if any(r != first for r in results[1:]):
            raise BtfError(
                f"{label} is ambiguous: {len(ids)} definitions with different "
                f"layouts (type ids {', '.join(map(str, ids))})"
            )
        if first[0] == "err":
            raise BtfError(first[1])
        return first[1]  # type: ignore[return-value]

    # ------------------------------------------------------------ public API

    def offsetof(self, struct: str, member: str) -> int:
        """Byte offset of *member* in struct/union *struct*.

        *member* may be a dotted path through embedded (not pointed-to)
        structs, e.g. ``offsetof("mm_struct", "mm_mt.ma_root")``.  Members
        of anonymous structs/unions are found as in C, their offsets added.

        Raises :class:`BtfError` if the struct or member does not exist, or
        if the member is a bitfield or does not start on a byte boundary.
        """

        def one(t: int, label: str) -> int:
            m = self._resolve_path(t, label, member)
            if m.bitfield_size:
                raise BtfError(
                    f"{label}.{member} is a {m.bitfield_size}-bit bitfield, "
                    "it has no byte offset"
                )
            if m.bit_offset % 8:
                raise BtfError(
                    f"{label}.{member} is not byte aligned "
                    f"(bit offset {m.bit_offset})"
                )
            return m.bit_offset // 8

        return self._unanimous(struct, one)

    def sizeof(self, name: str) -> int:
        """Size in bytes of struct/union *name*."""
        return self._unanimous(name, lambda t, _label: self._words[self._rec(t) + 2])

    def has_member(self, struct: str, member: str) -> bool:
        """Whether struct/union *struct* has *member* (dotted path allowed).

        Bitfields count as members.  A struct that does not exist has no
        members, so this returns ``False`` rather than raising: it is meant
        for feature tests across kernel versions.
        """
        try:
            self._candidates(struct)
        except BtfError:
            return False

        def one(t: int, label: str) -> bool:
            try:
                self._resolve_path(t, label, member)
            except BtfError:
                return False
            return True

        return self._unanimous(struct, one)

    def member_size(self, struct: str, member: str) -> int:
        """sizeof() of *member* of struct/union *struct* (dotted path allowed).

        Sizes are resolved through typedefs and qualifiers; pointers are 8
        bytes, arrays ``nelems * element size`` (0 for a flexible array).
        Bitfields raise :class:`BtfError`: they have no byte size.
        """

        def one(t: int, label: str) -> int:
            m = self._resolve_path(t, label, member)
            if m.bitfield_size:
                raise BtfError(
                    f"{label}.{member} is a {m.bitfield_size}-bit bitfield, "
                    "it has no byte size"
                )
            return self._type_size(m.type_id)

        return self._unanimous(struct, one)

    def enum_value(self, name: str) -> int:
        """Value of the enumerator *name* (of any enum), e.g. ``hugetlb_cgrp_id``.

        Enumerators are not indexed at load: this scans the enum records once
        per call (a few milliseconds), for the rare constants that only BTF has.
        """
        want = name.encode()
        words = self._words
        for tid in range(1, len(self._index)):
            w = self._index[tid]
            info = words[w + 1]
            kind = (info >> 24) & 0x1F
            if kind not in (KIND_ENUM, KIND_ENUM64):
                continue
            per = 2 if kind == KIND_ENUM else 3
            for k in range(info & 0xFFFF):
                m = w + 3 + per * k
                if self._name_is(words[m], want):
                    v = words[m + 1] if kind == KIND_ENUM else words[m + 1] | (words[m + 2] << 32)
                    return v - (1 << 32) if kind == KIND_ENUM and v >= 1 << 31 and info & 0x80000000 else v
        raise BtfError(f"no enumerator {name!r} in BTF")

    def tracepoint_args(self, name: str) -> list[str]:
        """The TP_PROTO argument types of tracepoint *name* (``mmap_lock_released``),
        as a raw tracepoint's ``ctx->args[i]`` sees them: from the kernel's
        ``btf_trace_<name>`` typedef (a pointer to ``void (void *__data, args...)``,
        include/linux/tracepoint.h ``__DECLARE_TRACE``), without ``__data``.
        Each type through typedefs and modifiers: ``"int _Bool"``,
        ``"pointer to struct mm_struct"``.  Raises BtfError when absent.
        """
        tid = self.typedef_id(f"btf_trace_{name}")
        if tid is None:
            raise BtfError(f"no tracepoint {name!r} in BTF (no btf_trace_{name} typedef)")
        words = self._words
        ptr = self._strip(words[self._rec(tid) + 2])
        proto = self._strip(words[self._rec(ptr) + 2]) if self._kind(ptr) == KIND_PTR else 0
        if self._kind(proto) != KIND_FUNC_PROTO:
            raise BtfError(f"btf_trace_{name} is not a pointer to a function prototype")
        p = self._rec(proto)
        params = [words[p + 3 + 2 * k + 1] for k in range(words[p + 1] & 0xFFFF)]
        return [self._describe(self._strip(t)) for t in params[1:]]

    def __repr__(self) -> str:
        return (
            f"<Btf {self.type_count} types, "
            f"{len(self._by_name)} struct/union names>"
        )
