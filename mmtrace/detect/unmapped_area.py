"""Cross-check every ``mmap:vm_unmapped_area`` against the rebuilt tree.

When the maple tree replaced the rbtree (v6.1), its gap search was checked
against the old one; this repeats that check in user space.  For each event
the tree of the process at that instant (the search runs before the new VMA
is stored) is searched the way mm/vma.c does it (``unmapped_area`` /
``unmapped_area_topdown`` of 6.12+: first fit from the top or the bottom,
alignment, and the stack guard gap of VM_GROWSDOWN neighbours).
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import pandas as pd

from ..events.flags import VM_GROWSDOWN, VM_UNMAPPED_AREA_TOPDOWN
from ..trace.kernelinfo import KernelInfo

__all__ = ["unmapped_area_check", "first_fit", "UnmappedAreaCheck"]

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


_COLUMNS = ["ts", "pid", "tid", "addr", "err", "length", "low_limit", "high_limit", "align_mask", "align_offset",
            "topdown", "free", "in_limits", "expected", "agrees", "vmas"]


class UnmappedAreaCheck:
    """The check of every ``vm_unmapped_area`` event of ``trace``, fed by a replay.

    :attr:`at` holds, per event (in ts order), the instant whose trees the
    kernel searched: every change before the event (the search runs before
    the new VMA is stored).  A replay calls the object as ``check(engine, k)``
    when its trees are those of ``at[k]`` (:meth:`mmtrace.model.replay.Engine.apply_probed`,
    e.g. through ``iter_changes(trace, probe=(check.at, check))``, so that the
    changes pass answers it); :meth:`frame` then gives the rows of
    :func:`unmapped_area_check`.
    """

    def __init__(self, trace) -> None:
        ev = trace.raw_events("unmapped_area")
        self.n = len(ev)
        if self.n == 0:
            self.at = np.zeros(0, np.int64)
            return
        kern = KernelInfo(trace.metadata)
        self.mmap_min = kern.mmap_min_addr
        self.guard = kern.stack_guard_gap
        self.mm_mt = kern.mm_mt
        ev = ev.sort_values("ts", kind="stable")
        self._l = {c: [int(x) for x in ev[c].tolist()] for c in ("ts", "tgid", "tid", "mm", "addr", "length", "low_limit",
                                                                  "high_limit", "align_mask", "align_offset", "flags")}
        self.at = ev["ts"].to_numpy().astype(np.int64) - 1
        self._rows: list = [None] * self.n
        # per event: (kernel's address or None, answer of the v6.4+ rule, of 6.1's)
        self._answers: list = [None] * self.n

    def __call__(self, engine, k: int) -> None:
        """Check event ``k`` against the trees of ``engine`` (those of ``at[k]``)."""
        from ..model.vmatree import V_FLAGS, join_pieces

        L = self._l
        mm = L["mm"][k]
        # The search runs on current->mm, which during exec is already the new
        # mm while the process is still bound to the old one: look the tree up
        # by its pointer.
        tree = engine.trees.get(mm + self.mm_mt) if mm else None
        if tree is None:
            tree = engine.tree_of(L["tgid"][k])
        v3 = [(s, e, v[V_FLAGS]) for s, e, v in join_pieces(tree.starts, tree.ends, tree.vals)] if tree is not None else []
        addr = L["addr"][k]
        err = addr - _ERR if addr >= _ERR - 4095 else 0
        length, low, high, amask, aoff = (L[c][k] for c in ("length", "low_limit", "high_limit", "align_mask", "align_offset"))
        topdown = bool(L["flags"][k] & VM_UNMAPPED_AREA_TOPDOWN)
        # Both rules of the low limit (first_fit's clamp_low): which one this
        # kernel follows is decided in frame(), from the whole trace.  They
        # differ only for a low limit below mmap_min_addr, and top-down only
        # when the clamped search fails: a gap that fits above mmap_min_addr is
        # the first from the top either way, and the top-down answer depends on
        # the gap's end and its neighbours, not on where the search may start.
        exp = first_fit(v3, length, low, high, amask, aoff, topdown, mmap_min_addr=self.mmap_min, guard=self.guard)
        if low >= self.mmap_min or (topdown and exp is not None):
            exp_61 = exp
        else:
            exp_61 = first_fit(v3, length, low, high, amask, aoff, topdown, mmap_min_addr=self.mmap_min,
                               guard=self.guard, clamp_low=False)
        if err:
            free = in_limits = True
        else:
            end = addr + length
            # v3 is sorted and disjoint: only the last VMA starting below end can overlap
            i = bisect_left(v3, (end,)) - 1
            free = i < 0 or v3[i][1] <= addr
            in_limits = low <= addr and end <= high and ((addr - aoff) & amask) == 0
        self._answers[k] = (None if err else addr, exp, exp_61)
        self._rows[k] = (L["ts"][k], L["tgid"][k], L["tid"][k], 0 if err else addr, err, length, low, high, amask,
                         aoff, topdown, free, in_limits, len(v3))

    def frame(self) -> pd.DataFrame:
        """The rows of :func:`unmapped_area_check`, once every event was checked."""
        if self.n == 0:
            return pd.DataFrame(columns=_COLUMNS)
        # Feature check, from the trace itself: since v6.4 ("mm: move
        # 'mmap_min_addr' logic from callers into vm_unmapped_area()") the search
        # never starts below mmap_min_addr; 6.1's unmapped_area{,_topdown}() in
        # mm/mmap.c start at the caller's low_limit.  The rules give different
        # answers only in a nearly full address space; one answer that only 6.1's
        # rule gives says the kernel follows it, and then all of the trace must.
        old_rule = any(got == e61 and got != e for got, e, e61 in self._answers)
        cols = list(zip(*self._rows))
        expected, agrees = [], []
        for (got, e, e61), free, in_limits in zip(self._answers, cols[11], cols[12]):
            exp = e61 if old_rule else e
            expected.append(exp or 0)
            agrees.append((exp is None) if got is None else (free and in_limits and exp == got))
        data = dict(zip(_COLUMNS[:13], cols[:13]))
        data.update(expected=expected, agrees=agrees, vmas=cols[13])
        return pd.DataFrame({c: list(data[c]) for c in _COLUMNS}, columns=_COLUMNS)


def unmapped_area_check(trace, fed: UnmappedAreaCheck | None = None) -> pd.DataFrame:
    """One row per ``vm_unmapped_area`` event.

    Columns: ``ts``, ``pid``, ``tid``, ``addr`` (what the kernel returned;
    NaN-free: -errno as a negative ``err``), ``err``, ``length``,
    ``low_limit``, ``high_limit``, ``align_mask``, ``align_offset``,
    ``topdown``, ``free`` (the returned range held no VMA in the rebuilt
    tree), ``in_limits`` (inside [low_limit, high_limit) and aligned as
    asked), ``expected`` (the first-fit answer of the rebuilt tree, 0 for
    -ENOMEM), ``agrees`` (free, in limits, and equal to ``expected``),
    ``vmas`` (VMAs in the rebuilt tree at that instant).  ``fed``: an
    :class:`UnmappedAreaCheck` of ``trace`` another replay already fed (the
    report's changes pass); else one replay of the model is made here.
    """
    if fed is None:
        from ..model.model import model_of

        fed = UnmappedAreaCheck(trace)
        if fed.n:
            model = model_of(trace)
            engine = model.engine()
            k = 0
            for w in model.source.windows(model.every):
                k = engine.apply_probed(w, fed.at, k, lambda i: fed(engine, i))
    return fed.frame()
