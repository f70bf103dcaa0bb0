"""The unmapped-area check fed by the changes pass against its own stepped replay.

Before issue 10's fold, :func:`mmtrace.detect.unmapped_area_check` stepped
a second replay of the model to each event (``Engine.run`` per event,
:func:`_stepped` below, kept verbatim as the reference).  Now one replay
answers every event at its instant (:meth:`mmtrace.model.replay.Engine.apply_probed`):
the model's own when the check runs alone, the changes pass's
(``iter_changes(probe=...)``) in ``mmtrace report``.  :func:`assert_same_check`
requires the same frame from all three, whatever the window size.
"""

from __future__ import annotations

import pandas as pd

import mmtrace
from mmtrace.detect.unmapped_area import _ERR, _start_gap, UnmappedAreaCheck, unmapped_area_check
from mmtrace.events.flags import VM_GROWSDOWN
from mmtrace.events.flags import VM_UNMAPPED_AREA_TOPDOWN
from mmtrace.trace.kernelinfo import KernelInfo


def first_fit_old(
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
    """``mmtrace.detect.first_fit`` as it was (main at f4d39ba): the whole gap list
    of the joined VMAs built per search, then scanned."""
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


def _stepped(trace) -> pd.DataFrame:
    """The check as it was: the model's engine stepped to each event (main at b423de2),
    each search on the joined VMAs (:func:`first_fit_old`)."""
    from mmtrace.model.model import model_of

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
    ev = ev.sort_values("ts", kind="stable")
    engine = model.engine()
    rows = []
    answers = []
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
        exp, exp_61 = (first_fit_old(v3, length, int(r.low_limit), int(r.high_limit), int(r.align_mask),
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
    old_rule = any(got == e61 and got != e for got, e, e61 in answers)
    for row, (got, e, e61) in zip(rows, answers):
        exp = e61 if old_rule else e
        row["expected"] = exp or 0
        row["agrees"] = (exp is None) if got is None else (row["free"] and row["in_limits"] and exp == got)
    return pd.DataFrame(rows, columns=cols)


def assert_same_check(path, *, windows=(None, 97, 5)) -> int:
    """Old (stepped) and new (alone; fed by ``iter_changes`` with each window size)
    on the trace at ``path``; returns the events compared."""
    from mmtrace.model import iter_changes

    old = _stepped(mmtrace.open(path))
    pd.testing.assert_frame_equal(unmapped_area_check(mmtrace.open(path)), old)
    for w in windows:
        t = mmtrace.open(path)
        fed = UnmappedAreaCheck(t)
        for _ in iter_changes(t, window=w, probe=(fed.at, fed)):
            pass
        pd.testing.assert_frame_equal(unmapped_area_check(t, fed), old)
    return len(old)
