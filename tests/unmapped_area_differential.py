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
from mmtrace.detect.unmapped_area import _ERR, UnmappedAreaCheck, first_fit, unmapped_area_check
from mmtrace.events.flags import VM_UNMAPPED_AREA_TOPDOWN
from mmtrace.trace.kernelinfo import KernelInfo


def _stepped(trace) -> pd.DataFrame:
    """The check as it was: the model's engine stepped to each event (main at b423de2)."""
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
