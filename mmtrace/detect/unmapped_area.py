"""Cross-check every ``mmap:vm_unmapped_area`` against the rebuilt tree.

When the maple tree replaced the rbtree (v6.1), its gap search was checked
against the old one; this repeats that check in user space.  For each event
the tree of the process at that instant (the search runs before the new VMA
is stored) is searched the way mm/vma.c does it (``unmapped_area`` /
``unmapped_area_topdown`` of 6.12+: first fit from the top or the bottom,
alignment, and the stack guard gap of VM_GROWSDOWN neighbours).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import compress
from collections.abc import Iterator
from operator import eq, gt, itemgetter

import numpy as np
import pandas as pd

from ..events.flags import VM_GROWSDOWN, VM_UNMAPPED_AREA_TOPDOWN
from ..model.vmatree import V_FLAGS, V_PTR, continues
from ..trace.kernelinfo import KernelInfo

__all__ = ["unmapped_area_check", "first_fit", "first_fit_pieces", "vma_count", "UnmappedAreaCheck"]

_ERR = 1 << 64
_PTR = itemgetter(V_PTR)  # a piece value's VMA pointer


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
    (PAGE_SIZE for x86's top-down search).  :func:`first_fit_pieces` on
    VMAs that are one piece each.
    """
    vals = [(0, v[2]) for v in vmas]  # (V_PTR, V_FLAGS): pointer 0, so no two join
    return first_fit_pieces([v[0] for v in vmas], [v[1] for v in vmas], vals, length, low,
                            high, align_mask, align_offset, topdown, mmap_min_addr=mmap_min_addr, guard=guard,
                            clamp_low=clamp_low)


def first_fit_pieces(
    starts: list[int],
    ends: list[int],
    vals: list[tuple],
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
    """:func:`first_fit` on a tree's pieces as :class:`mmtrace.model.vmatree.VmaTree`
    holds them (sorted, disjoint; ``vals[i]`` starts with the VMA pointer and
    vm_flags), without joining them into VMAs first.

    The gaps between VMAs are the gaps between pieces (a piece after a gap
    starts its VMA), so the search starts with a bisection at ``high``
    (top-down) or ``low`` and visits gaps only until one fits, as the
    kernel's maple tree gap search does: the cost is the gaps visited, not
    the VMAs of the tree (a 3,000-VMA process took ~0.5 ms per event when
    every search built the whole gap list)."""
    need = length + align_mask
    if need < length:
        return None
    if clamp_low:
        low = max(low, mmap_min_addr)
    n = len(starts)
    top = 1 << 64
    # gap g (0..n): [ends[g-1] (0 for g = 0), starts[g] (2**64 for g = n)),
    # below piece g and above piece g - 1; it exists when not empty (g = n always)
    if topdown:
        while True:
            found = None
            # gaps above bisect_left(ends, high) start at or above high: none fits
            for g in _gaps_down(starts, ends, bisect_left(ends, high)):
                gs = ends[g - 1] if g else 0
                ge = starts[g] if g < n else top
                if ge <= low:
                    break  # this gap and every one below end at or below low
                cs = gs if gs > low else low
                ce = ge if ge < high else high
                if ce > cs and ce - cs >= need:
                    found = (cs, ce, g)
                    break
            if found is None:
                return None
            cs, ce, g = found
            gap = ce - length
            gap -= (gap - align_offset) & align_mask
            if g < n and vals[g][V_FLAGS] & VM_GROWSDOWN:
                if _start_gap(starts[g], vals[g][V_FLAGS], guard) < ce:
                    high = _start_gap(starts[g], vals[g][V_FLAGS], guard)
                    continue
            elif g > 0 and ends[g - 1] > gap:  # vm_end_gap: no VM_GROWSUP on x86
                i = g - 1
                while i > 0 and continues(starts, ends, vals, i):
                    i -= 1
                high = starts[i]  # the previous VMA's start
                continue
            return gap
    while True:
        found = None
        # gaps below bisect_right(starts, low) end at or below low: none fits
        for g in _gaps_up(starts, ends, bisect_right(starts, low)):
            gs = ends[g - 1] if g else 0
            if gs >= high:
                break  # this gap and every one above start at or above high
            ge = starts[g] if g < n else top
            cs = gs if gs > low else low
            ce = ge if ge < high else high
            if ce > cs and ce - cs >= need:
                found = (cs, ce, g)
                break
        if found is None:
            return None
        cs, ce, g = found
        gap = cs
        gap += (align_offset - gap) & align_mask
        if g < n and vals[g][V_FLAGS] & VM_GROWSDOWN:
            if _start_gap(starts[g], vals[g][V_FLAGS], guard) < gap + length - 1:
                i = g + 1
                while i < n and continues(starts, ends, vals, i):
                    i += 1
                low = ends[i - 1]  # the next VMA's end
                continue
        elif g > 0 and ends[g - 1] > gap:
            low = ends[g - 1]
            continue
        return gap


def _gaps_down(starts: list[int], ends: list[int], g: int) -> Iterator[int]:
    """The gaps of :func:`first_fit_pieces` that are not empty, from gap ``g``
    down (gap ``len(starts)``, above every piece, always is one).  Pieces that
    touch (most VMAs of a busy region) are skipped at C speed, a run at a time."""
    n = len(starts)
    if g >= n:
        yield n
        g = n - 1
    step = 32
    while g >= 1:
        lo = max(0, g - step)  # gaps g..lo+1: gap i is empty when starts[i] == ends[i - 1]
        yield from compress(range(g, lo, -1), map(gt, reversed(starts[lo + 1:g + 1]), reversed(ends[lo:g])))
        g = lo
        step *= 4
    if g == 0 and starts[0] > 0:
        yield 0


def _gaps_up(starts: list[int], ends: list[int], g: int) -> Iterator[int]:
    """:func:`_gaps_down` upwards, from gap ``g``."""
    n = len(starts)
    if g == 0:
        if n == 0 or starts[0] > 0:
            yield 0
        g = 1
    step = 32
    while g < n:
        hi = min(n, g + step)  # gaps g..hi-1
        yield from compress(range(g, hi), map(gt, starts[g:hi], ends[g - 1:hi - 1]))
        g = hi
        step *= 4
    if n:
        yield n


def vma_count(starts: list[int], ends: list[int], vals: list[tuple]) -> int:
    """VMAs of a tree's pieces (``len(join_pieces(...))``, without joining): the
    pieces less those that continue the one before.  Only pieces of one
    pointer can join; those pairs are found at C speed (``map``, ``compress``)
    and checked one by one, so a tree of thousands of VMAs costs tens of µs."""
    n = len(starts)
    if n < 2:
        return n
    ptr = list(map(_PTR, vals))
    same = compress(range(1, n), map(eq, ptr[1:], ptr))
    return n - sum(1 for i in same if continues(starts, ends, vals, i))


_FIELDS = ("ts", "tgid", "tid", "mm", "addr", "length", "low_limit", "high_limit", "align_mask", "align_offset", "flags")
_CHUNK = 4096  # events whose fields are Python ints at a time
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
        # the events' fields as numpy, made Python ints a chunk at a time (_lists)
        self._ev = {c: ev[c].to_numpy() for c in _FIELDS}
        self._l: dict = {}
        self._l0 = -1
        self.at = ev["ts"].to_numpy().astype(np.int64) - 1
        # per event: the range held no VMA, it is in the limits, VMAs in the tree, the
        # answers of the v6.4+ rule and of 6.1's
        self._free = [True] * self.n
        self._in_limits = [True] * self.n
        self._nvmas = [0] * self.n
        self._exp: list = [None] * self.n
        self._exp61: list = [None] * self.n

    def _lists(self, k: int) -> int:
        """Make event ``k``'s chunk of fields Python lists (``_l``); returns ``k``'s index in it."""
        k0 = k - k % _CHUNK
        if k0 != self._l0:
            self._l = {c: [int(x) for x in v[k0:k0 + _CHUNK].tolist()] for c, v in self._ev.items()}
            self._l0 = k0
        return k - k0

    def __call__(self, engine, k: int) -> None:
        """Check event ``k`` against the trees of ``engine`` (those of ``at[k]``)."""
        j = self._lists(k)
        L = self._l
        mm = L["mm"][j]
        # The search runs on current->mm, which during exec is already the new
        # mm while the process is still bound to the old one: look the tree up
        # by its pointer.
        tree = engine.trees.get(mm + self.mm_mt) if mm else None
        if tree is None:
            tree = engine.tree_of(L["tgid"][j])
        S, E, V = (tree.starts, tree.ends, tree.vals) if tree is not None else ([], [], [])
        addr = L["addr"][j]
        err = addr >= _ERR - 4095
        length, low, high, amask, aoff = (L[c][j] for c in ("length", "low_limit", "high_limit", "align_mask", "align_offset"))
        topdown = bool(L["flags"][j] & VM_UNMAPPED_AREA_TOPDOWN)
        # Both rules of the low limit (first_fit's clamp_low): which one this
        # kernel follows is decided in frame(), from the whole trace.  They
        # differ only for a low limit below mmap_min_addr, and top-down only
        # when the clamped search fails: a gap that fits above mmap_min_addr is
        # the first from the top either way, and the top-down answer depends on
        # the gap's end and its neighbours, not on where the search may start.
        exp = first_fit_pieces(S, E, V, length, low, high, amask, aoff, topdown, mmap_min_addr=self.mmap_min,
                               guard=self.guard)
        if low >= self.mmap_min or (topdown and exp is not None):
            exp_61 = exp
        else:
            exp_61 = first_fit_pieces(S, E, V, length, low, high, amask, aoff, topdown, mmap_min_addr=self.mmap_min,
                                      guard=self.guard, clamp_low=False)
        if not err:
            end = addr + length
            # pieces are sorted and disjoint: only the last one starting below end can
            # overlap (its VMA's later pieces, if any, start at or after end)
            i = bisect_left(S, end) - 1
            self._free[k] = i < 0 or E[i] <= addr
            self._in_limits[k] = low <= addr and end <= high and ((addr - aoff) & amask) == 0
        self._exp[k] = exp
        self._exp61[k] = exp_61
        self._nvmas[k] = vma_count(S, E, V)

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
        ev = self._ev
        addr = ev["addr"].astype(np.uint64)
        err_m = addr >= np.uint64(_ERR - 4095)
        got = np.where(err_m, np.uint64(0), addr).tolist()  # the kernel's address (0: -errno)
        is_err = err_m.tolist()
        old_rule = any(g == e61 and g != e for g, e, e61 in zip((None if x else g for g, x in zip(got, is_err)),
                                                               self._exp, self._exp61))
        exp = self._exp61 if old_rule else self._exp
        agrees = [(e is None) if x else (f and il and e == g)
                  for g, x, e, f, il in zip(got, is_err, exp, self._free, self._in_limits)]
        # Python ints per column, as the rows were: pandas picks each column's dtype from the values
        data = {
            "ts": ev["ts"].tolist(), "pid": ev["tgid"].tolist(), "tid": ev["tid"].tolist(), "addr": got,
            "err": np.where(err_m, addr.view(np.int64), 0).tolist(),  # -errno: addr - 2**64
            "length": ev["length"].tolist(), "low_limit": ev["low_limit"].tolist(),
            "high_limit": ev["high_limit"].tolist(), "align_mask": ev["align_mask"].tolist(),
            "align_offset": ev["align_offset"].tolist(),
            "topdown": ((ev["flags"].astype(np.uint64) & np.uint64(VM_UNMAPPED_AREA_TOPDOWN)) != 0).tolist(),
            "free": self._free, "in_limits": self._in_limits, "expected": [e or 0 for e in exp], "agrees": agrees,
            "vmas": self._nvmas,
        }
        return pd.DataFrame(data, columns=_COLUMNS)


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
