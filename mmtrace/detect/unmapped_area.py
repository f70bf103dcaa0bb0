"""Cross-check every ``mmap:vm_unmapped_area`` against the rebuilt tree.

When the maple tree replaced the rbtree (v6.1), its gap search was checked
against the old one; this repeats that check in user space.  For each event
the tree of the process at that instant (the search runs before the new VMA
is stored) is searched the way mm/vma.c does it (``unmapped_area`` /
``unmapped_area_topdown`` of 6.12+: first fit from the top or the bottom,
alignment, and the stack guard gap of VM_GROWSDOWN neighbours).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..events.flags import VM_GROWSDOWN, VM_UNMAPPED_AREA_TOPDOWN
from ..trace.kernelinfo import KernelInfo

__all__ = ["unmapped_area_check", "first_fit"]

_ERR = 1 << 64


def _start_gap(start: int, flags: int, guard: int) -> int:
    # vm_start_gap(): a VM_GROWSDOWN VMA keeps stack_guard_gap free below it.
    if flags & VM_GROWSDOWN:
        return max(start - guard, 0)
    return start


def first_fit(
    vmas: list[tuple[int, int, int]],
    length: int,
    low: int,
    high: int,
    align_mask: int,
    align_offset: int,
    topdown: bool,
    *,
    mmap_min_addr: int = 65536,
    guard: int = 256 << 12,
    clamp_low: bool = True,
) -> int | None:
    """The address the kernel's search would return, or None (-ENOMEM).

    ``vmas``: sorted (start, end, vm_flags).  Mirrors unmapped_area_topdown()
    and unmapped_area() in mm/vma.c, retry loops included.  ``clamp_low``:
    the search starts at mmap_min_addr at the lowest, as since v6.4 ("mm: move
    'mmap_min_addr' logic from callers into vm_unmapped_area()"); False is
    the rule of 6.1's mm/mmap.c, which searches from the caller's low_limit
    (PAGE_SIZE for x86's top-down search).
    """
    need = length + align_mask
    if need < length:
        return None
    if clamp_low:
        low = max(low, mmap_min_addr)
    # gaps: [end of previous, start of next) with the neighbours' indexes
    gaps = []
    prev_end = 0
    for i, (s, e, _) in enumerate(vmas):
        if s > prev_end:
            gaps.append((prev_end, s, i - 1, i))
        prev_end = max(prev_end, e)
    gaps.append((prev_end, 1 << 64, len(vmas) - 1, len(vmas)))
    if topdown:
        while True:
            found = None
            for gs, ge, pi, ni in reversed(gaps):
                cs, ce = max(gs, low), min(ge, high)
                if ce > cs and ce - cs >= need:
                    found = (cs, ce, pi, ni)
                    break
            if found is None:
                return None
            cs, ce, pi, ni = found
            gap = ce - length
            gap -= (gap - align_offset) & align_mask
            nxt = vmas[ni] if ni < len(vmas) else None
            if nxt is not None and nxt[2] & VM_GROWSDOWN:
                if _start_gap(nxt[0], nxt[2], guard) < ce:
                    high = _start_gap(nxt[0], nxt[2], guard)
                    continue
            else:
                prv = vmas[pi] if pi >= 0 else None
                if prv is not None and prv[1] > gap:  # vm_end_gap: no VM_GROWSUP on x86
                    high = prv[0]
                    continue
            return gap
    while True:
        found = None
        for gs, ge, pi, ni in gaps:
            cs, ce = max(gs, low), min(ge, high)
            if ce > cs and ce - cs >= need:
                found = (cs, ce, pi, ni)
                break
        if found is None:
            return None
        cs, ce, pi, ni = found
        gap = cs
        gap += (align_offset - gap) & align_mask
        nxt = vmas[ni] if ni < len(vmas) else None
        if nxt is not None and nxt[2] & VM_GROWSDOWN:
            if _start_gap(nxt[0], nxt[2], guard) < gap + length - 1:
                low = nxt[1]
                continue
        else:
            prv = vmas[pi] if pi >= 0 else None
            if prv is not None and prv[1] > gap:
                low = prv[1]
                continue
        return gap


def unmapped_area_check(trace) -> pd.DataFrame:
    """One row per ``vm_unmapped_area`` event.

    Columns: ``ts``, ``pid``, ``tid``, ``addr`` (what the kernel returned;
    NaN-free: -errno as a negative ``err``), ``err``, ``length``,
    ``low_limit``, ``high_limit``, ``align_mask``, ``align_offset``,
    ``topdown``, ``free`` (the returned range held no VMA in the rebuilt
    tree), ``in_limits`` (inside [low_limit, high_limit) and aligned as
    asked), ``expected`` (the first-fit answer of the rebuilt tree, 0 for
    -ENOMEM), ``agrees`` (free, in limits, and equal to ``expected``),
    ``vmas`` (VMAs in the rebuilt tree at that instant).
    """
    from ..model.model import model_of

    ev = trace.raw_events("unmapped_area")
    cols = ["ts", "pid", "tid", "addr", "err", "length", "low_limit", "high_limit", "align_mask", "align_offset",
            "topdown", "free", "in_limits", "expected", "agrees", "vmas"]
    if len(ev) == 0:
        return pd.DataFrame(columns=cols)
    kern = KernelInfo(trace.metadata)
    mmap_min = kern.mmap_min_addr
    guard = kern.stack_guard_gap
    model = model_of(trace)
    mm_mt = kern.mm_mt
    # The search runs on current->mm, which during exec is already the new
    # mm while the process is still bound to the old one: look the tree up
    # by its pointer, at the instant just before the event.
    ev = ev.sort_values("ts", kind="stable")
    engine = model.engine()
    rows = []
    answers = []  # (kernel's address or None, answer of the v6.4+ rule, of 6.1's)
    for r in ev.itertuples(index=False):
        engine.run(max(model._pos(int(r.ts) - 1), engine.pos))
        tree = engine.trees.get(int(r.mm) + mm_mt) if int(r.mm) else None
        if tree is None:
            tree = engine.tree_of(int(r.tgid))
        vmas = [(v.start, v.end, v.vm_flags, v.vma) for v in tree.vmas()] if tree is not None else []
        addr = int(r.addr)
        err = addr - _ERR if addr >= _ERR - 4095 else 0
        length = int(r.length)
        topdown = bool(int(r.flags) & VM_UNMAPPED_AREA_TOPDOWN)
        v3 = [(s, e, f) for s, e, f, _ in vmas]
        # Both rules of the low limit (first_fit's clamp_low): which one
        # this kernel follows is decided below, from the whole trace.
        exp, exp_61 = (first_fit(v3, length, int(r.low_limit), int(r.high_limit), int(r.align_mask),
                                 int(r.align_offset), topdown, mmap_min_addr=mmap_min, guard=guard, clamp_low=c)
                       for c in (True, False))
        if err:
            free = in_limits = True
        else:
            free = not any(s < addr + length and addr < e for s, e, _ in v3)
            in_limits = (int(r.low_limit) <= addr and addr + length <= int(r.high_limit)
                         and ((addr - int(r.align_offset)) & int(r.align_mask)) == 0)
        answers.append((None if err else addr, exp, exp_61))
        rows.append({
            "ts": int(r.ts), "pid": int(r.tgid), "tid": int(r.tid), "addr": 0 if err else addr, "err": err,
            "length": length, "low_limit": int(r.low_limit), "high_limit": int(r.high_limit),
            "align_mask": int(r.align_mask), "align_offset": int(r.align_offset), "topdown": topdown,
            "free": free, "in_limits": in_limits, "vmas": len(vmas),
        })
    # Feature check, from the trace itself: since v6.4 ("mm: move
    # 'mmap_min_addr' logic from callers into vm_unmapped_area()") the search
    # never starts below mmap_min_addr; 6.1's unmapped_area{,_topdown}() in
    # mm/mmap.c start at the caller's low_limit.  The rules give different
    # answers only in a nearly full address space; one answer that only 6.1's
    # rule gives says the kernel follows it, and then all of the trace must.
    old_rule = any(got == e61 and got != e for got, e, e61 in answers)
    for row, (got, e, e61) in zip(rows, answers):
        exp = e61 if old_rule else e
        row["expected"] = exp or 0
        row["agrees"] = (exp is None) if got is None else (row["free"] and row["in_limits"] and exp == got)
    return pd.DataFrame(rows, columns=cols)
