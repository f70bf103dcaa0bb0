"""An interval map of one address space: half-open [start, end) -> VMA value.

Three parallel Python lists (``starts``, ``ends``, ``vals``) kept sorted and
non-overlapping, searched with :mod:`bisect`.  An address space holds tens to
a few thousand VMAs, and a maple-tree store touches one to three of them, so
list slicing (memmove in C) beats any tree structure written in Python.

A value is a plain tuple (see :data:`VAL_FIELDS`), never mutated in place, so
copying a tree (fork, checkpoints) is three shallow list copies.  The file
offset is kept as ``pgbase`` = vm_pgoff - vm_start/PAGE: the page offset of
address 0.  A piece cut from a VMA then keeps the right offset
(``pgbase + start // PAGE``) without rewriting its value: splitting is free.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import NamedTuple

import numpy as np

from ..events.flags import (
    MAPS_PERM_BITS,
    VM_DONTCOPY,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_MAYSHARE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    perms,
)

__all__ = [
    "VmaTree",
    "Vma",
    "join_pieces",
    "VAL_FIELDS",
    "V_PTR",
    "V_FLAGS",
    "V_PGBASE",
    "V_DEV",
    "V_INO",
    "V_WTS",
    "V_WTID",
    "VM_READ",
    "VM_WRITE",
    "VM_EXEC",
    "VM_SHARED",
    "VM_GROWSDOWN",
    "VM_DONTCOPY",
    "VM_HUGETLB",
    "PAGE_SHIFT",
    "perms_of",
    "perms_column",
    "flags_of_perms",
]

PAGE_SHIFT = 12


# Value tuple layout.  wts/wtid: time and thread of the last write of this
# piece, so a syscall's exit-time correction never undoes what another thread
# stored after that syscall began (mmap_lock serialises the kernel's writes,
# not the exit tracepoints).
VAL_FIELDS = ("ptr", "vm_flags", "pgbase", "dev", "ino", "wts", "wtid")
V_PTR, V_FLAGS, V_PGBASE, V_DEV, V_INO, V_WTS, V_WTID = range(7)

# show_map_vma() in fs/proc/task_mmu.c prints 's' for VM_MAYSHARE, not
# VM_SHARED: a MAP_SHARED mapping of a read-only file has only the former.
_PERMS = [perms(f) for f in range(0x100)]


def perms_of(vm_flags: int) -> str:
    """The 4 permission characters /proc/PID/maps shows for ``vm_flags``."""
    return _PERMS[vm_flags & MAPS_PERM_BITS]


_PERMS_ARR = np.array(_PERMS[:MAPS_PERM_BITS + 1], dtype=object)


def perms_column(vm_flags) -> np.ndarray:
    """:func:`perms_of` of each of an array of ``vm_flags`` (object array of str)."""
    return _PERMS_ARR[(np.asarray(vm_flags, dtype=np.uint64) & np.uint64(MAPS_PERM_BITS)).astype(np.intp)]


def flags_of_perms(perms: str) -> int:
    """VM_READ/WRITE/EXEC/SHARED from a maps perms string (the rest is unknown)."""
    return (
        (VM_READ if perms[0] == "r" else 0)
        | (VM_WRITE if perms[1] == "w" else 0)
        | (VM_EXEC if perms[2] == "x" else 0)
        | ((VM_SHARED | VM_MAYSHARE) if perms[3] == "s" else 0)
    )


class Vma(NamedTuple):
    """One VMA as /proc/PID/maps shows it: ``[start, end)``, the kernel pointer
    ``vma`` (0 when known only from a snapshot), ``vm_flags``, ``pgoff``
    (bytes), ``dev`` (kernel dev_t) and ``inode`` (0: anonymous)."""

    start: int
    end: int
    vma: int
    vm_flags: int
    pgoff: int
    dev: int
    inode: int


def join_pieces(starts, ends, vals) -> list[tuple[int, int, tuple]]:
    """(start, end, value) per VMA of sorted pieces: adjacent pieces of one VMA
    pointer and flags are one VMA (a boundary moved in place: ``vma_expand`` /
    ``vma_shrink`` store only the part that changed), with the first piece's value.
    The one home of that rule: every reader of a tree's VMAs goes through it, or
    through :func:`continues` (the same rule for one pair, inlined here)."""
    out: list[tuple[int, int, tuple]] = []
    pp = pf = pe = None
    for s, e, v in zip(starts, ends, vals):
        p, f = v[0], v[1]
        if p and p == pp and f == pf and s == pe:
            out[-1] = (out[-1][0], e, out[-1][2])
        else:
            out.append((s, e, v))
        pp, pf, pe = p, f, e
    return out


def continues(starts, ends, vals, i: int) -> bool:
    """Is piece ``i`` the continuation of piece ``i - 1``, one VMA with it
    (:func:`join_pieces`' rule, for a reader that must not join the whole tree)?"""
    p = vals[i][V_PTR]
    return bool(p) and p == vals[i - 1][V_PTR] and vals[i][V_FLAGS] == vals[i - 1][V_FLAGS] and starts[i] == ends[i - 1]


class VmaTree:
    """One maple tree (one mm) as sorted, disjoint [start, end) -> value pieces.

    ``ptr`` is the kernel address of the maple tree (``&mm->mm_mt``), or None
    while unknown (a process known only from its attach snapshot).  ``uid``
    names this incarnation: tree pointers are reused once an mm is freed.
    ``dup_ts``: for a fork child, when its copy of the parent's tree was made
    (pieces written before then were inherited, not stored by dup_mmap).
    """

    __slots__ = ("starts", "ends", "vals", "ptr", "uid", "born", "dup_ts", "dead")

    def __init__(self, ptr: int | None, uid: int, born: int = 0) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.vals: list[tuple] = []
        self.ptr = ptr
        self.uid = uid
        self.born = born
        self.dup_ts = -1
        self.dead = False

    def __len__(self) -> int:
        return len(self.starts)

    def copy(self, uid: int | None = None) -> VmaTree:
        t = VmaTree(self.ptr, self.uid if uid is None else uid, self.born)
        t.starts = self.starts[:]
        t.ends = self.ends[:]
        t.vals = self.vals[:]
        t.dup_ts = self.dup_ts
        t.dead = self.dead
        return t

    # -- writes -----------------------------------------------------------
    def assign(self, lo: int, hi: int, val: tuple | None) -> None:
        """Make [lo, hi) hold ``val`` (None: clear it), cutting what overlaps."""
        starts, ends = self.starts, self.ends
        i = bisect_right(ends, lo)  # first piece ending after lo
        j = bisect_left(starts, hi, i)  # first piece starting at/after hi
        if i == j:  # nothing overlaps: plain insert (or nothing, for a clear)
            if val is not None:
                starts.insert(i, lo)
                ends.insert(i, hi)
                self.vals.insert(i, val)
            return
        vals = self.vals
        ns: list[int] = []
        ne: list[int] = []
        nv: list = []
        if starts[i] < lo:  # left remainder of the first overlapped piece
            ns.append(starts[i])
            ne.append(lo)
            nv.append(vals[i])
        if val is not None:
            ns.append(lo)
            ne.append(hi)
            nv.append(val)
        if ends[j - 1] > hi:  # right remainder of the last one
            ns.append(hi)
            ne.append(ends[j - 1])
            nv.append(vals[j - 1])
        starts[i:j] = ns
        ends[i:j] = ne
        vals[i:j] = nv

    def clear(self, lo: int, hi: int) -> None:
        self.assign(lo, hi, None)

    def overlapping(self, lo: int, hi: int) -> range:
        """Indexes of the pieces that overlap [lo, hi)."""
        i = bisect_right(self.ends, lo)
        return range(i, bisect_left(self.starts, hi, i))

    def pieces(self, lo: int = 0, hi: int = 1 << 64) -> list[tuple[int, int, tuple]]:
        """(start, end, value) of every piece overlapping [lo, hi), unclipped."""
        r = self.overlapping(lo, hi)
        return list(zip(self.starts[r.start : r.stop], self.ends[r.start : r.stop], self.vals[r.start : r.stop]))

    def vmas(self, lo: int = 0, hi: int = 1 << 64) -> list[Vma]:
        """The VMAs overlapping [lo, hi) (pieces of one VMA joined, :func:`join_pieces`)."""
        r = self.overlapping(lo, hi)
        a, b = r.start, r.stop
        out = []
        for s, e, v in join_pieces(self.starts[a:b], self.ends[a:b], self.vals[a:b]):
            out.append(Vma(s, e, v[V_PTR], v[V_FLAGS], ((v[V_PGBASE] + (s >> PAGE_SHIFT)) << PAGE_SHIFT) & ((1 << 64) - 1),
                           v[V_DEV], v[V_INO]))
        return out

    def keep_if(self, pred) -> None:
        """Drop every piece whose value fails ``pred``."""
        keep = [k for k, v in enumerate(self.vals) if pred(v)]
        if len(keep) != len(self.vals):
            self.starts = [self.starts[k] for k in keep]
            self.ends = [self.ends[k] for k in keep]
            self.vals = [self.vals[k] for k in keep]

    def check(self) -> None:
        """Assert the invariants (sorted, disjoint, non-empty pieces); for tests."""
        for k in range(len(self.starts)):
            assert self.starts[k] < self.ends[k], (k, self.starts[k], self.ends[k])
            if k:
                assert self.ends[k - 1] <= self.starts[k], (k, self.ends[k - 1], self.starts[k])
