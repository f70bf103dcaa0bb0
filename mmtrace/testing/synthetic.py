"""A SYNTHETIC trace replaying the failing ``__split_vma`` path of Linux 6.1-rc.

Nothing here was recorded: the events are built, in the trace's own schema,
to show what mmtrace reports for the bug fixed in the maple tree series
("mm: start tracking VMAs with maple tree"): when ``__split_vma`` failed
after copying the VMA, the half-built copy was closed without first setting
``vm_start = vm_end``, so ``hugetlb_vm_op_close()`` released the
reservations of its half of the mapping although the original VMA still
covered and owned them; unmapping the mapping later released them again.

The sequence, for one process with a private 4-huge-page MAP_HUGETLB mapping:

1. mmap reserves 4 pages (kernel sample: resv_huge_pages 4);
2. mprotect of the upper half fails with -ENOMEM inside __split_vma: no
   VMA changes, but the kernel's counter drops to 2;
3. munmap of the whole mapping releases 4: the counter wraps to 2^64 - 2.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..events.decode import make_records, to_frame
from ..events.flags import MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, PROT_READ, PROT_WRITE, VM_HUGETLB
from ..events.schema import KINDS
from ..trace.writer import TraceWriter

__all__ = ["write_failed_split_trace", "SYNTHETIC_NOTE"]

SYNTHETIC_NOTE = "SYNTHETIC: built by mmtrace.testing.synthetic, not recorded from a kernel"

_MM_MT = 64  # offsetof(struct mm_struct, mm_mt) stated in the synthetic probe plan
_MM = 0xFFFF888100000000
_TREE = _MM + _MM_MT
_VMA = 0xFFFF888123450000
_STACK_VMA = 0xFFFF888123460000
_FN = {0xFFFFFFFF81000000: "mas_store_prealloc", 0xFFFFFFFF81000100: "mas_wr_node_store"}
_SC = {"mmap": 1, "munmap": 2, "mprotect": 3}
_H = 2 << 20
_PID = 4242
_A = 0x7F0000000000
_STACK = (0x7FFFF0000000, 0x7FFFF0021000)
_VM_RW_HUGE = 0x1 | 0x2 | 0x10 | 0x20 | 0x40 | VM_HUGETLB | 0x00100000  # r, w, may*, hugetlb, account


def write_failed_split_trace(path: str | Path) -> Path:
    """Write the synthetic trace to ``path`` (a new directory) and return it."""
    path = Path(path)
    w = TraceWriter(path)
    t0 = 1_000_000_000
    hdr = {"tgid": _PID, "tid": _PID}
    meta = {
        "complete": True,
        "synthetic": SYNTHETIC_NOTE,
        "stop_reason": "synthetic",
        "kernel_release": "synthetic (the failing __split_vma path of v6.1-rc)",
        "clock": "CLOCK_MONOTONIC",
        "page_size": 4096,
        "command_line": ["mmtrace.testing.synthetic.write_failed_split_trace"],
        "probe_plan": {"offsets": {"mm_struct.mm_mt": _MM_MT}, "syscalls": _SC, "features": {"hugetlb": True}},
        "start_ns": t0,
        "stop_ns": t0 + 1_000_000,
        # A built trace of one process alone on its pool: its global counters are exact evidence.
        "hugetlb_evidence": {"cgroup": None, "exclusive_pool": True, "counters": "hstate (global), synthetic"},
        "lost": {k: 0 for k in KINDS},
        "events": {},
    }
    w.append("procfs/attach", pd.DataFrame([{"pid": _PID, "ppid": 1, "comm": "split-bug", "exe": "/synthetic",
                                              "ts": t0, "tree": 0}]))
    w.append("procfs/maps", pd.DataFrame([{
        "pid": _PID, "when": "attach", "ts_before": t0, "ts_after": t0 + 10, "start": _STACK[0], "end": _STACK[1],
        "perms": "rw-p", "pgoff": 0, "dev": "00:00", "inode": 0, "path": "[stack]",
    }]))
    w.append("procfs/hugepages", pd.DataFrame([{"ts": t0 + 20, "size_kb": 2048, "nr_hugepages": 8,
                                                 "free_hugepages": 8, "resv_hugepages": 0, "surplus_hugepages": 0}]))
    prot_rw = PROT_READ | PROT_WRITE
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB
    sc = [
        # 1. mmap: 4 huge pages reserved
        {**hdr, "ts": t0 + 2000, "ts_enter": t0 + 1000, "ret": _A, "args": [0, 4 * _H, prot_rw, flags, 2**64 - 1, 0],
         "mm": _MM, "sc": _SC["mmap"], "nr": 9},
        # 2. mprotect of the upper half: __split_vma fails (-ENOMEM) after the copy
        {**hdr, "ts": t0 + 4000, "ts_enter": t0 + 3000, "ret": -12, "args": [_A + 2 * _H, 2 * _H, PROT_READ, 0, 0, 0],
         "mm": _MM, "sc": _SC["mprotect"], "nr": 10},
        # 3. munmap of the whole mapping
        {**hdr, "ts": t0 + 6000, "ts_enter": t0 + 5000, "ret": 0, "args": [_A, 4 * _H, 0, 0, 0, 0],
         "mm": _MM, "sc": _SC["munmap"], "nr": 11},
    ]
    tw = [
        {**hdr, "ts": t0 + 500, "fn": 0xFFFFFFFF81000000, "tree": _TREE, "mm": _MM, "index": _STACK[0],
         "last": _STACK[1] - 1, "val": _STACK_VMA, "vm_start": _STACK[0], "vm_end": _STACK[1], "vm_flags": 0x100173,
         "flags": 0x3},
        {**hdr, "ts": t0 + 1500, "fn": 0xFFFFFFFF81000000, "tree": _TREE, "mm": _MM, "index": _A,
         "last": _A + 4 * _H - 1, "val": _VMA, "vm_start": _A, "vm_end": _A + 4 * _H, "vm_flags": _VM_RW_HUGE,
         "vm_pgoff": 0, "flags": 0x1 | 0x2 | 0x4 | 0x8, "dev": 0x11, "ino": 77},
        # mprotect's failed split stores nothing; munmap clears the range
        {**hdr, "ts": t0 + 5500, "fn": 0xFFFFFFFF81000100, "tree": _TREE, "mm": _MM, "index": _A,
         "last": _STACK[0] - 1, "val": 0, "flags": 0x2 | 0x4},
    ]
    hs = [
        {**hdr, "ts": t0 + 2001, "hstate": 0xFFFFFFFF83000000, "nr_huge_pages": 8, "free_huge_pages": 8,
         "resv_huge_pages": 4, "tree": _TREE, "order": 9, "cause": 1, "sc": _SC["mmap"]},
        {**hdr, "ts": t0 + 4001, "hstate": 0xFFFFFFFF83000000, "nr_huge_pages": 8, "free_huge_pages": 8,
         "resv_huge_pages": 2, "tree": _TREE, "order": 9, "cause": 1, "sc": _SC["mprotect"]},
        {**hdr, "ts": t0 + 6001, "hstate": 0xFFFFFFFF83000000, "nr_huge_pages": 8, "free_huge_pages": 8,
         "resv_huge_pages": 2**64 - 2, "tree": _TREE, "order": 9, "cause": 1, "sc": _SC["munmap"]},
    ]
    frames = {
        "syscall": to_frame("syscall", make_records("syscall", sc), syscalls=_SC),
        "tree_write": to_frame("tree_write", make_records("tree_write", tw), fn_names=_FN),
        "hugetlb": to_frame("hugetlb", make_records("hugetlb", hs)),
    }
    for kind, df in frames.items():
        w.append(f"events/{kind}", df)
    meta["events"] = {k: len(v) for k, v in frames.items()}
    w.write_metadata(meta)
    return path
