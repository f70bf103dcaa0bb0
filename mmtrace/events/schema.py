"""Event layouts: the numpy side of ``collectors/events.h``.

Each :class:`EventKind` declares one struct of ``events.h`` as a numpy
structured dtype, so a batch of raw ring-buffer records decodes with one
``numpy.frombuffer``.  ``tests/unit/test_schema.py`` compiles ``events.h``
and checks that names, offsets and sizes agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EventKind",
    "LATER_FIELDS",
    "KINDS",
    "KIND_BY_ID",
    "HEADER",
    "TW_VAL_IS_VMA",
    "TW_CURRENT_MM",
    "TW_KNOWN_MM",
    "TW_FILE",
    "OP_WRITE",
    "OP_OP",
    "PROC_FORK",
    "PROC_EXEC",
    "PROC_EXIT",
    "PF_THREAD",
    "PF_SHARED_MM",
    "PF_GROUP_DEAD",
    "VS_STORE",
    "VS_SZERO",
    "HC_SYSCALL",
    "HC_FAULT",
    "HC_EXIT_MMAP",
    "ML_READ_LOCKED",
    "SC_COMPAT",
    "ML_WRITE_UNLOCK",
    "STACK_NONE",
    "stack_errors",
]

# Flag values mirror the #defines in events.h (test_schema checks them).
OP_WRITE, OP_OP = 0, 1
TW_VAL_IS_VMA, TW_CURRENT_MM, TW_KNOWN_MM, TW_FILE = 0x1, 0x2, 0x4, 0x8
PROC_FORK, PROC_EXEC, PROC_EXIT = 1, 2, 3
PF_THREAD, PF_SHARED_MM, PF_GROUP_DEAD = 0x1, 0x2, 0x4
VS_STORE, VS_SZERO = 0, 1
HC_SYSCALL, HC_FAULT, HC_EXIT_MMAP = 1, 2, 3
ML_READ_LOCKED, ML_WRITE_UNLOCK = 1, 2
SC_UNFINISHED, SC_COMPAT = 0x1, 0x2  # mmt_syscall.flags
STACK_NONE = -1  # stack_id of a record made without record -g
# Other negative stack ids: bpf_get_stackid()'s -errno (kernel/bpf/stackmap.c).
_STACK_ERRNO = {-17: "EEXIST", -14: "EFAULT", -12: "ENOMEM", -2: "ENOENT", -22: "EINVAL"}


def stack_errors(ids: np.ndarray) -> dict[str, int]:
    """{reason: records} of the stack ids that are not a stack (STACK_NONE left out):
    EEXIST a hash collision in the stack map (that stack is lost), EFAULT no user
    stack (a task without user memory), ENOMEM the map's free list empty."""
    ids = np.asarray(ids)
    bad = ids[(ids < 0) & (ids != STACK_NONE)]
    if not len(bad):
        return {}
    vals, counts = np.unique(bad, return_counts=True)
    return {_STACK_ERRNO.get(int(v), str(int(v))): int(c) for v, c in zip(vals, counts)}

HEADER: list[tuple[str, str]] = [
    ("kind", "u1"),
    ("_pad0", "u1"),
    ("cpu", "u2"),
    ("tgid", "u4"),
    ("tid", "u4"),
    ("_pad1", "u4"),
    ("ts", "u8"),
]


@dataclass(frozen=True)
class EventKind:
    """One event kind: its id on the wire, its C struct and its table name.

    ``fields`` lists the struct's members after the header, in order, as
    ``(name, numpy type)``; fixed arrays are ``(name, type, count)``.
    """

    id: int
    name: str  # the table name in a trace (events/<name>/)
    c_struct: str
    fields: tuple

    @property
    def dtype(self) -> np.dtype:
        """The packed numpy dtype of one record (header included)."""
        return np.dtype(HEADER + list(self.fields))

    @property
    def size(self) -> int:
        return self.dtype.itemsize


_U8 = "u8"

KINDS: dict[str, EventKind] = {
    k.name: k
    for k in (
        EventKind(
            1,
            "tree_write",
            "mmt_tree_write",
            (
                ("fn", _U8),
                ("tree", _U8),
                ("mm", _U8),
                ("index", _U8),
                ("last", _U8),
                ("min", _U8),
                ("max", _U8),
                ("node", _U8),
                ("piv", _U8),
                ("val", _U8),
                ("vm_start", _U8),
                ("vm_end", _U8),
                ("vm_flags", _U8),
                ("vm_pgoff", _U8),
                ("ino", _U8),
                ("dev", "u4"),
                ("op", "u2"),
                ("flags", "u2"),
            ),
        ),
        EventKind(
            2,
            "syscall",
            "mmt_syscall",
            (
                ("ts_enter", _U8),
                ("ret", "i8"),
                ("args", _U8, (6,)),
                ("mm", _U8),
                ("brk_enter", _U8),
                ("brk_exit", _U8),
                ("nr", "u4"),
                ("sc", "u2"),
                ("flags", "u2"),
                ("ret_addr", _U8),
                ("stack_id", "i4"),
                ("_pad2", "u4"),
            ),
        ),
        EventKind(
            3,
            "proc",
            "mmt_proc",
            (
                ("mm", _U8),
                ("tree", _U8),
                ("pid", "u4"),
                ("child_tgid", "u4"),
                ("what", "u2"),
                ("flags", "u2"),
                ("stack_id", "i4"),
                ("comm", "S16"),
                ("filename", "S128"),
                ("ret_addr", _U8),
            ),
        ),
        EventKind(
            4,
            "unmapped_area",
            "mmt_unmapped_area",
            (
                ("addr", _U8),
                ("total_vm", _U8),
                ("flags", _U8),
                ("length", _U8),
                ("low_limit", _U8),
                ("high_limit", _U8),
                ("align_mask", _U8),
                ("align_offset", _U8),
                ("mm", _U8),
            ),
        ),
        EventKind(5, "exit_mmap", "mmt_exit_mmap", (("mm", _U8), ("mt", _U8))),
        EventKind(
            6,
            "vma_store",
            "mmt_vma_store",
            (
                ("mt", _U8),
                ("vma", _U8),
                ("start", _U8),
                ("end", _U8),
                ("op", "u4"),
                ("_pad", "u4"),
            ),
        ),
        EventKind(
            7,
            "fault",
            "mmt_fault",
            (("address", _U8), ("ip", _U8), ("error_code", _U8)),
        ),
        EventKind(
            8,
            "hugetlb",
            "mmt_hugetlb",
            (
                ("hstate", _U8),
                ("nr_huge_pages", _U8),
                ("free_huge_pages", _U8),
                ("resv_huge_pages", _U8),
                ("surplus_huge_pages", _U8),
                ("tree", _U8),
                ("address", _U8),
                ("order", "u4"),
                ("cause", "u2"),
                ("sc", "u2"),
                ("cg_rsvd", _U8),
                ("ts_read", _U8),
            ),
        ),
        # collectors/mmap_lock.bpf.c: a followed syscall's mmap_lock leaves write mode
        EventKind(
            9,
            "mmap_lock",
            "mmt_mmap_lock",
            (("mm", _U8), ("sc", "u2"), ("op", "u2"), ("_pad", "u4")),
        ),
    )
}

# Fields added to a kind after traces of the same format version were
# written, with the value that means "not recorded": a trace from before has
# no such column, which is not damage.  The readers leave them out of the
# schema check and fill them with that value.
LATER_FIELDS: dict[str, dict[str, int]] = {
    # the traced command's hugetlb cgroup counter (~0: no cgroup sample), see collectors/huge.bpf.c
    # ... and when the sample's counters had been read (0: not recorded)
    "hugetlb": {"cg_rsvd": (1 << 64) - 1, "ts_read": 0},
    # record -g's user stacks (collectors/stacks.bpf.c): STACK_NONE, not captured
    "syscall": {"stack_id": -1, "ret_addr": 0},
    "proc": {"stack_id": -1, "ret_addr": 0},
}


KIND_BY_ID: dict[int, EventKind] = {k.id: k for k in KINDS.values()}
