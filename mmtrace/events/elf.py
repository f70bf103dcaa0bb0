"""ELF files, read with pyelftools: build ids, symbols, debuginfo.

pyelftools (eliben/pyelftools) is the pure-Python ELF/DWARF reader that
tools such as angr and pwntools build on: it parses section and program
headers, note segments and symbol tables of any ELF class and byte order,
so mmtrace parses no ELF structure by hand.  Used by the recorder (the
build id of each file a traced process maps, mmtrace/capture/stacks.py)
and by symbolization (mmtrace/detect/callsites.py).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["build_id", "ElfSymbols", "debuginfo_path", "is_call_before", "find_by_inode", "kdev"]


def kdev(st_dev: int) -> int:
    """A stat() st_dev as the kernel's dev_t (MAJOR << 20 | MINOR), as events carry it."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def find_by_inode(missing: set[tuple[int, int]], dirs) -> dict[tuple[int, int], tuple[str, str]]:
    """{(kernel dev_t, inode): (path, "")} of the files of ``missing`` found in
    ``dirs`` (not recursive); found keys are removed from ``missing``.  How a
    file known only by the inode a VMA held gets its path back (same host only)."""
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for d in sorted(dirs):
        if not missing:
            break
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                key = (kdev(st.st_dev), st.st_ino)
                if key in missing:
                    out[key] = (e.path, "")
                    missing.discard(key)
    return out


def _notes_build_id(elf) -> str:
    """The NT_GNU_BUILD_ID of ``elf`` (an ELFFile) as hex, from note sections or, for
    files without section headers, PT_NOTE segments; "" when it has none."""
    from elftools.elf.sections import NoteSection
    from elftools.elf.segments import NoteSegment

    holders = [s for s in elf.iter_sections() if isinstance(s, NoteSection)]
    if not holders:
        holders = [s for s in elf.iter_segments() if isinstance(s, NoteSegment)]
    for h in holders:
        for note in h.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return str(note["n_desc"])
    return ""


def build_id(path: str | os.PathLike) -> str:
    """Hex build id of the ELF file at ``path`` ("" if none, not ELF, or unreadable)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            return _notes_build_id(ELFFile(f))
    except (OSError, ELFError, ValueError, KeyError, AssertionError):
        return ""


def debuginfo_path(bid: str, root: str | os.PathLike = "/") -> Path | None:
    """Debian's separate debuginfo for build id ``bid`` under ``root``
    (/usr/lib/debug/.build-id/XX/REST.debug, as gdb and perf look it up), if installed."""
    if len(bid) < 4:
        return None
    p = Path(root) / "usr/lib/debug/.build-id" / bid[:2] / (bid[2:] + ".debug")
    return p if p.is_file() else None


# Call instructions by the distance from their first byte to the return
# address (x86-64): e8 rel32 (5); ff /2 indirect through a register (2, 3
# with a REX prefix), through memory with disp8/SIB (3-4), disp32 (6-7).
_CALL_LENGTHS = (5, 2, 3, 4, 6, 7)


def is_call_before(code: bytes) -> bool:
    """Do the bytes ending just before a return address hold an x86-64 call?
    ``code`` is the 7 bytes before it.  Used to accept the word at the user
    stack pointer as a return address (collectors/stacks.bpf.c)."""
    if len(code) < 7:
        code = bytes(7 - len(code)) + code
    if code[-5] == 0xE8:
        return True
    for n in _CALL_LENGTHS[1:]:
        i = 7 - n
        op = code[i]
        if op in (0x40, 0x41, 0x42, 0x43, 0x48, 0x49, 0x4A, 0x4B) and n > 2:  # REX prefix
            i += 1
            op = code[i]
        if op == 0xFF and i + 1 < 7 and (code[i + 1] >> 3) & 7 == 2:
            mod, rm = code[i + 1] >> 6, code[i + 1] & 7
            size = 2 + (rm == 4 and mod != 3) + (1 if mod == 1 else 4 if mod == 2 or (mod == 0 and rm == 5) else 0)
            if i + size == 7:
                return True
    return False


@dataclass
class ElfSymbols:
    """The function symbols of one ELF file, looked up by file offset.

    Symbols come from ``.symtab`` (and the debuginfo file's, where installed)
    and ``.dynsym``; a symbol's value is a virtual address, turned into a
    file offset through the PT_LOAD segment holding it, so frames recorded
    as (file, offset) need no load address.
    """

    path: str
    build_id: str = ""
    debuginfo: str = ""
    _starts: list[int] = field(default_factory=list)
    _sizes: list[int] = field(default_factory=list)
    _names: list[str] = field(default_factory=list)
    _loads: list[tuple[int, int, int]] = field(default_factory=list)  # (offset, vaddr, filesz)
    _f: object = None

    @classmethod
    def load(cls, path: str | os.PathLike, debug_root: str | os.PathLike | None = "/") -> ElfSymbols:
        """Read ``path``; look for debuginfo under ``debug_root`` (None: do not).
        Raises OSError or ValueError for a file that is not a readable ELF."""
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        out = cls(str(path))
        try:
            f = open(path, "rb")
            elf = ELFFile(f)
            out._f = f
            out.build_id = _notes_build_id(elf)
            out._loads = [(s["p_offset"], s["p_vaddr"], s["p_filesz"]) for s in elf.iter_segments()
                          if s["p_type"] == "PT_LOAD"]
            syms = cls._symbols(elf)
            dbg = debuginfo_path(out.build_id, debug_root) if debug_root is not None and out.build_id else None
            if dbg is not None:
                with open(dbg, "rb") as g:
                    syms.update(cls._symbols(ELFFile(g)))
                out.debuginfo = str(dbg)
        except (ELFError, AssertionError, KeyError) as e:
            raise ValueError(f"{path}: not a readable ELF file ({e})") from e
        rows = sorted((out._offset(v), s, n) for v, (s, n) in syms.items())
        rows = [r for r in rows if r[0] is not None]
        out._starts = [r[0] for r in rows]
        out._sizes = [r[1] for r in rows]
        out._names = [r[2] for r in rows]
        return out

    @staticmethod
    def _symbols(elf) -> dict[int, tuple[int, str]]:
        """{value: (size, name)} of the defined function symbols of .symtab and .dynsym
        (the first name of a value wins: .symtab's, which has the local ones)."""
        out: dict[int, tuple[int, str]] = {}
        for name in (".symtab", ".dynsym"):
            sec = elf.get_section_by_name(name)
            if sec is None or not hasattr(sec, "iter_symbols"):
                continue
            for sym in sec.iter_symbols():
                if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC") or sym["st_shndx"] == "SHN_UNDEF":
                    continue
                v = sym["st_value"]
                if v and (v not in out or (out[v][0] == 0 and sym["st_size"])):
                    out[v] = (sym["st_size"], sym.name.split("@", 1)[0])
        return out

    def _offset(self, vaddr: int) -> int | None:
        for off, va, size in self._loads:
            if va <= vaddr < va + max(size, 1):
                return vaddr - va + off
        return None

    def symbolize(self, offset: int) -> tuple[str, int] | None:
        """(function, offset into it) of the code at file ``offset``, or None.
        A symbol without a size covers up to the next symbol."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return None
        size, start = self._sizes[i], self._starts[i]
        if offset < start + size or (not size and (i + 1 == len(self._starts) or offset < self._starts[i + 1])):
            return self._names[i], offset - start
        return None

    def read(self, offset: int, n: int) -> bytes:
        """``n`` bytes of the file at ``offset`` (b"" if out of range)."""
        if self._f is None or offset < 0:
            return b""
        self._f.seek(offset)
        return self._f.read(n)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
