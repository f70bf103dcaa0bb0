"""Tests for mmtrace.capture.btf.

Two halves:

* a synthetic BTF blob built here with struct.pack, so the parser's
  handling of every kind's record length, anonymous members, typedef
  chains, bitfields and duplicate names is checked without root and
  independently of the host kernel;
* the running kernel's /sys/kernel/btf/vmlinux, cross-checked member by
  member against ``bpftool btf dump ... format raw``.  That file exists on
  every machine this project runs on (CI included), so a missing file or a
  missing bpftool is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from mmtrace.capture.btf import VMLINUX_BTF, Btf, BtfError

# --------------------------------------------------------------------------
# Synthetic BTF
# --------------------------------------------------------------------------

K_INT, K_PTR, K_ARRAY, K_STRUCT, K_UNION, K_ENUM, K_FWD, K_TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
K_VOLATILE, K_CONST, K_RESTRICT, K_FUNC, K_FUNC_PROTO, K_VAR, K_DATASEC = 9, 10, 11, 12, 13, 14, 15
K_FLOAT, K_DECL_TAG, K_TYPE_TAG, K_ENUM64 = 16, 17, 18, 19


class BtfBuilder:
    """Minimal BTF writer: add types in order, get their ids back."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian
        self.strs = bytearray(b"\0")  # offset 0 is the empty name
        self.types: list[bytes] = []

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def _add(self, name: str, kind: int, vlen: int, size_or_type: int,
             trailer: bytes = b"", kflag: bool = False) -> int:
        info = (int(kflag) << 31) | (kind << 24) | vlen
        self.types.append(
            struct.pack(self.e + "III", self.s(name), info, size_or_type) + trailer
        )
        return len(self.types)  # type ids count from 1

    def int_(self, name: str, size: int, bits: int | None = None,
             bit_off: int = 0, signed: bool = True) -> int:
        bits = size * 8 if bits is None else bits
        enc = (int(signed) << 24) | (bit_off << 16) | bits
        return self._add(name, K_INT, 0, size, struct.pack(self.e + "I", enc))

    def ref(self, kind: int, target: int, name: str = "") -> int:
        """PTR/TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG/FUNC/FWD-style."""
        return self._add(name, kind, 0, target)

    def array(self, elem: int, index_type: int, nelems: int) -> int:
        return self._add("", K_ARRAY, 0, 0,
                         struct.pack(self.e + "III", elem, index_type, nelems))

    def composite(self, kind: int, name: str, size: int,
                  members: list[tuple], kflag: bool = False) -> int:
        """members: (name, type, bit_offset[, bitfield_size])."""
        data = b""
        for m in members:
            mname, mtype, bit_off = m[:3]
            bf = m[3] if len(m) > 3 else 0
            off = (bf << 24) | bit_off if kflag else bit_off
            data += struct.pack(self.e + "III", self.s(mname), mtype, off)
        return self._add(name, kind, len(members), size, data, kflag)

    def raw(self, name: str, kind: int, vlen: int, size_or_type: int,
            trailer: bytes) -> int:
        return self._add(name, kind, vlen, size_or_type, trailer)

    def blob(self, hdr_len: int = 24, magic: int = 0xEB9F, version: int = 1) -> bytes:
        types = b"".join(self.types)
        hdr = struct.pack(self.e + "HBBIIIII", magic, version, 0, hdr_len,
                          0, len(types), len(types), len(self.strs))
        hdr += b"\0" * (hdr_len - len(hdr))  # fields of a newer header: zero
        return hdr + types + bytes(self.strs)


def build_synthetic(endian: str = "<", hdr_len: int = 24) -> bytes:
    b = BtfBuilder(endian)
    e = endian
    # Every kind that is never looked at comes first, with non-empty
    # trailers: if the loader got one record length wrong, every type id
    # after it would be off and the layout tests below would fail.
    t_int = b.int_("int", 4)
    t_ulong = b.int_("long unsigned int", 8, signed=False)
    t_char = b.int_("char", 1)
    b.raw("e", K_ENUM, 2, 4, struct.pack(e + "IIII", b.s("A"), 0, b.s("B"), 1))
    b.raw("e64", K_ENUM64, 1, 8, struct.pack(e + "III", b.s("C"), 1, 2))
    proto = b.raw("", K_FUNC_PROTO, 2, t_int,
                  struct.pack(e + "IIII", b.s("x"), t_int, b.s("y"), t_ulong))
    # FUNC's vlen is its linkage (1 = global), not a count of trailing records.
    func = b.raw("f", K_FUNC, 1, proto, b"")
    var = b.raw("v", K_VAR, 0, t_int, struct.pack(e + "I", 1))
    b.raw(".data", K_DATASEC, 1, 4, struct.pack(e + "III", var, 0, 4))
    b.raw("tag", K_DECL_TAG, 0, func, struct.pack(e + "i", -1))
    b.ref(K_TYPE_TAG, t_int, "user")
    b.ref(K_VOLATILE, t_int)
    b.ref(K_RESTRICT, t_int)
    b._add("double", K_FLOAT, 0, 8)
    b.ref(K_FWD, 0, "outer")  # a forward declaration must not shadow the struct
    b.array(t_char, t_int, 3)

    t_ptr = b.ref(K_PTR, t_int)  # int *
    t_arr = b.array(t_int, t_int, 4)  # int[4]
    t_inner = b.composite(K_STRUCT, "inner", 16, [("a", t_int, 0), ("b", t_ulong, 64)])
    t_inner_t = b.ref(K_TYPEDEF, t_inner, "inner_t")
    t_cinner = b.ref(K_CONST, t_inner_t)  # const inner_t
    t_anon_u = b.composite(K_UNION, "", 8, [("u_long", t_ulong, 0), ("u_ptr", t_ptr, 0)])
    t_anon_u2 = b.composite(K_UNION, "", 4, [("deeper", t_int, 0)])
    t_anon_s = b.composite(K_STRUCT, "", 8, [("deep", t_int, 0), ("", t_anon_u2, 32)])
    b.composite(K_STRUCT, "outer", 64, [
        ("first", t_int, 0),
        ("", t_anon_u, 64),        # anonymous union at byte 8
        ("in", t_cinner, 128),     # const typedef'd struct at byte 16
        ("p", t_ptr, 256),         # byte 32
        ("", t_anon_s, 320),       # anonymous struct (holding a union) at 40
        ("arr", t_arr, 384),       # byte 48
    ])
    # kind_flag struct: offsets carry bitfield sizes.
    b.composite(K_STRUCT, "flags", 8, [
        ("a", t_int, 0, 3),
        ("b", t_int, 3, 5),
        ("c", t_int, 32, 0),       # a plain member in a kind_flag struct
        ("odd", t_char, 12, 0),    # not a bitfield but not byte aligned either
    ], kflag=True)
    # Old-style bitfield (no kind_flag): an INT narrower than its storage.
    t_int3 = b.int_("int", 4, bits=3)
    b.composite(K_STRUCT, "oldbf", 4, [("x", t_int3, 0), ("y", t_int, 0)])
    b.composite(K_UNION, "outer_u", 8, [("ua", t_int, 0), ("ub", t_ulong, 0)])
    # Duplicates: an empty definition next to a real one ...
    b.composite(K_STRUCT, "dup", 0, [])
    b.composite(K_STRUCT, "dup", 8, [("d", t_ulong, 0)])
    # ... and two real ones that disagree on 'm' but agree on the size.
    b.composite(K_STRUCT, "amb", 8, [("m", t_int, 0), ("same", t_int, 32)])
    b.composite(K_STRUCT, "amb", 8, [("m", t_int, 32), ("same", t_int, 32)])
    return b.blob(hdr_len=hdr_len)


@pytest.fixture(scope="module", params=["<", ">"], ids=["little", "big"])
def syn(request: pytest.FixtureRequest) -> Btf:
    return Btf.from_bytes(build_synthetic(request.param))


def test_offsetof_direct(syn: Btf) -> None:
    assert syn.offsetof("outer", "first") == 0
    assert syn.offsetof("outer", "in") == 16
    assert syn.offsetof("outer", "p") == 32
    assert syn.offsetof("outer", "arr") == 48
    assert syn.offsetof("inner", "b") == 8


def test_offsetof_through_anonymous_members(syn: Btf) -> None:
    assert syn.offsetof("outer", "u_long") == 8
    assert syn.offsetof("outer", "u_ptr") == 8
    assert syn.offsetof("outer", "deep") == 40
    # anonymous union inside an anonymous struct: 40 + 4
    assert syn.offsetof("outer", "deeper") == 44


def test_offsetof_dotted_path_through_const_typedef(syn: Btf) -> None:
    assert syn.offsetof("outer", "in.a") == 16
    assert syn.offsetof("outer", "in.b") == 24


def test_dotted_path_does_not_follow_pointers(syn: Btf) -> None:
    with pytest.raises(BtfError, match=r"outer\.p .*pointer"):
        syn.offsetof("outer", "p.x")
    with pytest.raises(BtfError, match="not an embedded struct"):
        syn.offsetof("outer", "first.x")


def test_sizeof(syn: Btf) -> None:
    assert syn.sizeof("outer") == 64
    assert syn.sizeof("inner") == 16
    assert syn.sizeof("struct outer") == 64
    assert syn.sizeof("outer_u") == 8
    assert syn.sizeof("union outer_u") == 8
    with pytest.raises(BtfError, match="no union named 'outer'"):
        syn.sizeof("union outer")
    with pytest.raises(BtfError, match="no struct or union named 'inner_t'"):
        syn.sizeof("inner_t")  # a typedef name, not a struct tag


def test_member_size(syn: Btf) -> None:
    assert syn.member_size("outer", "first") == 4
    assert syn.member_size("outer", "in") == 16  # through const + typedef
    assert syn.member_size("outer", "in.b") == 8
    assert syn.member_size("outer", "p") == 8
    assert syn.member_size("outer", "arr") == 16
    assert syn.member_size("outer", "u_long") == 8
    assert syn.member_size("outer", "deeper") == 4
    assert syn.member_size("flags", "c") == 4


def test_missing_member(syn: Btf) -> None:
    with pytest.raises(BtfError, match=r"^struct outer has no member 'nope'$"):
        syn.offsetof("outer", "nope")
    with pytest.raises(LookupError):  # BtfError is a LookupError
        syn.offsetof("outer", "nope")
    with pytest.raises(BtfError, match=r"struct inner .* has no member 'zz'"):
        syn.offsetof("outer", "in.zz")
    with pytest.raises(BtfError, match="no struct or union named 'nostruct'"):
        syn.offsetof("nostruct", "x")
    with pytest.raises(BtfError):
        syn.offsetof("outer", "")
    with pytest.raises(BtfError):
        syn.offsetof("outer", "in..a")


def test_bitfields(syn: Btf) -> None:
    with pytest.raises(BtfError, match=r"flags\.a is a 3-bit bitfield"):
        syn.offsetof("flags", "a")
    with pytest.raises(BtfError, match="bitfield"):
        syn.offsetof("flags", "b")
    with pytest.raises(BtfError, match="bitfield"):
        syn.member_size("flags", "a")
    with pytest.raises(BtfError, match="bitfield"):
        syn.offsetof("oldbf", "x")  # old (non-kind_flag) encoding
    assert syn.offsetof("oldbf", "y") == 0
    assert syn.offsetof("flags", "c") == 4
    with pytest.raises(BtfError, match="not byte aligned"):
        syn.offsetof("flags", "odd")


def test_has_member(syn: Btf) -> None:
    assert syn.has_member("outer", "first")
    assert syn.has_member("outer", "deeper")
    assert syn.has_member("outer", "in.b")
    assert syn.has_member("flags", "a")  # bitfields are members too
    assert not syn.has_member("outer", "nope")
    assert not syn.has_member("outer", "in.zz")
    assert not syn.has_member("outer", "p.x")
    assert not syn.has_member("nostruct", "x")


def test_duplicate_names(syn: Btf) -> None:
    # The sized definition wins over an empty one.
    assert syn.sizeof("dup") == 8
    assert syn.offsetof("dup", "d") == 0
    # Differing layouts: refuse to guess where they disagree ...
    with pytest.raises(BtfError, match="ambiguous"):
        syn.offsetof("amb", "m")
    # ... and answer where every definition agrees.
    assert syn.offsetof("amb", "same") == 4
    assert syn.sizeof("amb") == 8


def test_longer_header_and_load(tmp_path: os.PathLike) -> None:
    # A newer kernel may append header fields; sections are relative to
    # hdr_len, so they must still be found.
    blob = build_synthetic(hdr_len=32)
    path = os.path.join(tmp_path, "btf")
    with open(path, "wb") as f:
        f.write(blob)
    btf = Btf.load(path)
    assert btf.offsetof("outer", "deeper") == 44


def test_malformed() -> None:
    good = build_synthetic()
    with pytest.raises(BtfError, match="magic"):
        Btf.from_bytes(b"\0\0" + good[2:])
    with pytest.raises(BtfError, match="too short"):
        Btf.from_bytes(good[:10])
    with pytest.raises(BtfError):
        Btf.from_bytes(good[:-10])  # sections run past the end
    b = BtfBuilder()
    b._add("x", 31, 0, 0)  # an unknown kind
    with pytest.raises(BtfError, match="unknown BTF kind 31"):
        Btf.from_bytes(b.blob())
    b = BtfBuilder()
    b.composite(K_STRUCT, "s", 8, [("a", 1, 0)])
    b.types[-1] = b.types[-1][:-4]  # member record cut short
    with pytest.raises(BtfError):
        Btf.from_bytes(b.blob())


# --------------------------------------------------------------------------
# The running kernel, cross-checked with bpftool
# --------------------------------------------------------------------------

# (struct, member) pairs the collectors read.
KERNEL_MEMBERS = [
    ("task_struct", "mm"),
    ("task_struct", "tgid"),
    ("task_struct", "pid"),
    ("task_struct", "comm"),
    ("mm_struct", "mm_mt"),
    ("mm_struct", "brk"),
    ("mm_struct", "start_brk"),
    ("mm_struct", "start_stack"),
    ("vm_area_struct", "vm_start"),
    ("vm_area_struct", "vm_end"),
    ("vm_area_struct", "vm_flags"),
    ("vm_area_struct", "vm_pgoff"),
    ("vm_area_struct", "vm_file"),
    ("vm_area_struct", "vm_mm"),
    ("ma_state", "tree"),
    ("ma_state", "index"),
    ("ma_state", "last"),
    ("ma_state", "node"),
    ("ma_state", "min"),
    ("ma_state", "max"),
    ("file", "f_inode"),
    ("inode", "i_ino"),
    ("inode", "i_sb"),
    ("super_block", "s_dev"),
]

# Values seen on the 6.18 development kernel.  Only checked when the kernel
# matches, since randomized layouts / other configs legitimately differ.
KNOWN_6_18 = {
    ("task_struct", "mm"): 1136,
    ("mm_struct", "mm_mt"): 64,
    ("vm_area_struct", "vm_start"): 0,
    ("vm_area_struct", "vm_end"): 8,
    ("vm_area_struct", "vm_flags"): 32,
    ("vm_area_struct", "vm_pgoff"): 80,
    ("vm_area_struct", "vm_file"): 88,
    ("ma_state", "tree"): 0,
    ("ma_state", "index"): 8,
    ("ma_state", "last"): 16,
}


@dataclass
class RawType:
    kind: str
    name: str
    attrs: dict[str, str]
    # (name, type_id, bits_offset, bitfield_size) for STRUCT/UNION
    members: list[tuple[str, int, int, int]] = field(default_factory=list)


_RAW_HEAD = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(.*)$")
_RAW_MEMBER = re.compile(
    r"^\s+'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?\s*$"
)


def _find_bpftool() -> str:
    # /usr/sbin is not on every user's PATH, but bpftool lives there on Debian.
    path = shutil.which("bpftool") or next(
        (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        pytest.fail(
            "bpftool not found: install bpftool (part of mmtrace's install, "
            "e.g. `apt-get install bpftool`); it is needed to cross-check the "
            "BTF parser against the kernel"
        )
    return path


@pytest.fixture(scope="module")
def bpftool_raw() -> dict[int, RawType]:
    """The kernel's BTF as bpftool prints it: id -> RawType."""
    out = subprocess.run(
        [_find_bpftool(), "btf", "dump", "file", VMLINUX_BTF, "format", "raw"],
        check=True, capture_output=True, text=True,
    ).stdout
    types: dict[int, RawType] = {}
    cur: RawType | None = None
    for line in out.splitlines():
        m = _RAW_HEAD.match(line)
        if m:
            attrs = dict(kv.split("=", 1) for kv in m.group(4).split() if "=" in kv)
            cur = types[int(m.group(1))] = RawType(m.group(2), m.group(3), attrs)
            continue
        if cur is not None and cur.kind in ("STRUCT", "UNION"):
            mm = _RAW_MEMBER.match(line)
            if mm:
                cur.members.append((mm.group(1), int(mm.group(2)),
                                    int(mm.group(3)), int(mm.group(4) or 0)))
    assert types, "bpftool printed no types"
    return types


def _raw_strip(types: dict[int, RawType], tid: int) -> int:
    while tid and types[tid].kind in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT",
                                      "TYPE_TAG"):
        tid = int(types[tid].attrs["type_id"])
    return tid


def _raw_find(types: dict[int, RawType], tid: int, name: str) -> tuple[int, int] | None:
    """(bits_offset, bitfield_size) of *name* in *tid*, via anonymous members."""
    for mname, mtype, bits, bf in types[tid].members:
        if mname == name:
            return bits, bf
        if mname == "(anon)":
            inner = _raw_strip(types, mtype)
            if inner and types[inner].kind in ("STRUCT", "UNION"):
                found = _raw_find(types, inner, name)
                if found is not None:
                    return bits + found[0], found[1]
    return None


def _raw_struct(types: dict[int, RawType], name: str) -> int:
    ids = [i for i, t in types.items()
           if t.kind in ("STRUCT", "UNION") and t.name == name
           and int(t.attrs.get("size", "0")) > 0]
    assert len(ids) == 1, f"bpftool shows {len(ids)} sized definitions of {name}: {ids}"
    return ids[0]


@pytest.fixture(scope="module")
def kbtf() -> Btf:
    # No skip when the file is absent: every mmtrace host has kernel BTF.
    return Btf.load(VMLINUX_BTF)


def test_kernel_load_and_lookups_fast() -> None:
    # Runs before the bpftool fixture fills the heap with its parse, which
    # would otherwise add garbage-collection time to the measurement.
    t0 = time.perf_counter()
    btf = Btf.load(VMLINUX_BTF)
    t1 = time.perf_counter()
    for s, m in KERNEL_MEMBERS[:20]:
        btf.offsetof(s, m)
    t2 = time.perf_counter()
    print(f"\nBTF load {1e3 * (t1 - t0):.1f} ms ({btf.type_count} types), "
          f"20 lookups {1e3 * (t2 - t1):.2f} ms")
    # The collectors resolve offsets at every start; a loader that walked
    # every member or decoded every string would blow this budget.
    assert t2 - t0 < 1.0


@pytest.mark.parametrize(("struct_name", "member"), KERNEL_MEMBERS,
                         ids=[f"{s}.{m}" for s, m in KERNEL_MEMBERS])
def test_kernel_offsets_match_bpftool(kbtf: Btf, bpftool_raw: dict[int, RawType],
                                      struct_name: str, member: str) -> None:
    sid = _raw_struct(bpftool_raw, struct_name)
    found = _raw_find(bpftool_raw, sid, member)
    assert found is not None, f"bpftool shows no {struct_name}.{member}"
    bits, bitfield = found
    assert bitfield == 0 and bits % 8 == 0
    assert kbtf.offsetof(struct_name, member) == bits // 8
    assert kbtf.has_member(struct_name, member)


@pytest.mark.parametrize("struct_name",
                         sorted({s for s, _ in KERNEL_MEMBERS} | {"maple_tree"}))
def test_kernel_sizeof_matches_bpftool(kbtf: Btf, bpftool_raw: dict[int, RawType],
                                       struct_name: str) -> None:
    sid = _raw_struct(bpftool_raw, struct_name)
    assert kbtf.sizeof(struct_name) == int(bpftool_raw[sid].attrs["size"])


def test_kernel_dotted_path_matches_bpftool(kbtf: Btf,
                                            bpftool_raw: dict[int, RawType]) -> None:
    mm = _raw_struct(bpftool_raw, "mm_struct")
    mt = _raw_struct(bpftool_raw, "maple_tree")
    mm_mt = _raw_find(bpftool_raw, mm, "mm_mt")
    ma_root = _raw_find(bpftool_raw, mt, "ma_root")
    assert mm_mt is not None and ma_root is not None
    assert kbtf.offsetof("mm_struct", "mm_mt.ma_root") == (mm_mt[0] + ma_root[0]) // 8


def test_kernel_known_values(kbtf: Btf) -> None:
    if not os.uname().release.startswith("6.18"):
        pytest.skip("reference values are for the 6.18 development kernel")
    got = {k: kbtf.offsetof(*k) for k in KNOWN_6_18}
    assert got == KNOWN_6_18


def test_kernel_member_sizes(kbtf: Btf) -> None:
    assert kbtf.member_size("task_struct", "mm") == 8
    assert kbtf.member_size("task_struct", "comm") == 16  # char[TASK_COMM_LEN]
    assert kbtf.member_size("task_struct", "tgid") == 4
    assert kbtf.member_size("vm_area_struct", "vm_start") == 8
    assert kbtf.member_size("mm_struct", "mm_mt") == kbtf.sizeof("maple_tree")


def test_kernel_errors(kbtf: Btf) -> None:
    with pytest.raises(BtfError, match=r"^struct mm_struct has no member 'foo'$"):
        kbtf.offsetof("mm_struct", "foo")
    with pytest.raises(BtfError, match="does not follow pointers"):
        kbtf.offsetof("task_struct", "mm.pgd")
    assert not kbtf.has_member("mm_struct", "foo")


def test_named_ids(syn: Btf) -> None:
    # build_synthetic: "f" is a FUNC, "inner_t" a TYPEDEF of struct inner.
    assert syn.func_id("f") is not None and syn._kind(syn.func_id("f")) == K_FUNC
    assert syn._kind(syn.typedef_id("inner_t")) == K_TYPEDEF
    assert syn.typedef_id("f") is None and syn.func_id("inner_t") is None  # the kind must match
    assert syn.typedef_id("inner") is None and syn.func_id("nope") is None
    assert syn.func_id("") is None  # the empty name (anonymous types) is no name
    assert syn._kind(syn.struct_id("dup")) == K_STRUCT
    with pytest.raises(BtfError):
        syn.struct_id("nope")


def test_kernel_named_ids_match_bpftool(kbtf: Btf, bpftool_raw: dict[int, RawType]) -> None:
    # What capture/kernel.py resolves for tp_btf and bpf_rdonly_cast.
    for name, kind, look in (("btf_trace_ma_write", "TYPEDEF", kbtf.typedef_id),
                             ("bpf_rdonly_cast", "FUNC", kbtf.func_id),
                             ("vm_area_struct", "STRUCT", kbtf.struct_id)):
        ids = [i for i, t in bpftool_raw.items() if t.kind == kind and t.name == name
               and (kind != "STRUCT" or int(t.attrs["size"]))]
        if not ids:
            continue  # an older kernel: the feature is then off
        assert look(name) == ids[0], name
