"""Every change of every tree, grouped by cause and classified from before/after.

The replay of the model (:class:`mmtrace.model.replay.Engine`, the same
windowed pass as ``vmas()``) with a :class:`ChangeObserver`: the changes a
tree goes through are grouped by their cause (one traced syscall of one
thread, from its first store to its exit-time corrections, possibly across
windows; or a kernel path: ``fork_copy``, ``exec_setup``, ``exit``,
``stack_growth``, other ``kernel`` stores), and each group is classified by
comparing the VMAs around the range it touched before and after it: the
VMAs that went away (``before``) and those that appeared (``after``).

The tree is never copied: before each change the observer keeps the pieces
it will overwrite (an undo log of the group), and at the end of the group
rebuilds the old state of the touched range only, from the tree as it is
and that log.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np
import pandas as pd

from collections.abc import Iterator

from ..events.flags import MAPS_PERM_BITS, PROT_GROWSDOWN, VMA_PERM_BITS
from .replay import Engine, snapshot_trees
from .stream import Source, no_gc
from .vmatree import VM_GROWSDOWN, VmaTree, join_pieces, perms_of

__all__ = ["changes", "iter_changes", "CHANGE_COLUMNS", "classify", "ChangeObserver"]

_NOSPAN = 1 << 65
_WHOLE = 1 << 65  # above every address: "the whole tree"
_SETUP = ("fork_copy", "exec_setup")
_PERMS = [perms_of(f) for f in range(MAPS_PERM_BITS + 1)]  # by vm_flags & MAPS_PERM_BITS
_PAGE = 4096  # lengths are rounded up to pages by the kernel: widen spans by one
_NO_ARGS = (0, 0, 0, 0, 0, 0, 0)  # arg0..arg5, ret of a kernel path

CHANGE_COLUMNS = (
    "ts", "ts_end", "pid", "tid", "tree", "cause", "kind", "syscall",
    "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "ret",
    "lo", "hi", "n_before", "n_after", "bytes_before", "bytes_after", "before", "after",
    "before_vmas", "after_vmas",
)


def _vmas(starts, ends, vals) -> list[tuple[int, int, int, int]]:
    """(start, end, ptr, vm_flags) per VMA (:func:`mmtrace.model.vmatree.join_pieces`)."""
    return [(s, e, v[0], v[1]) for s, e, v in join_pieces(starts, ends, vals)]


def classify(before: list[tuple], after: list[tuple], *, moved: bool = False) -> str | None:
    """Kind of a change from the VMAs that went away and those that appeared.

    ``before``/``after`` hold (start, end, ...) tuples; None when both are empty.
    Same bytes covered: more VMAs is a ``split``, fewer a ``merge``, as many a
    ``protect``.  More bytes: a new VMA is a ``map``, one VMA grown an
    ``expand``, VMAs joined a ``merge``.  Fewer bytes: a VMA cut ``shrink``,
    otherwise ``unmap``.  ``moved``: an mremap that relocated (``move``).
    """
    if not before and not after:
        return None
    if not before:
        return "map"
    if not after:
        return "unmap"
    if moved:
        return "move"
    nb, na = len(before), len(after)
    cb = sum(e - s for s, e, *_ in before)
    ca = sum(e - s for s, e, *_ in after)
    if ca == cb:
        return "split" if na > nb else "merge" if na < nb else "protect"
    if ca > cb:
        return "map" if na > nb else "expand" if na == nb else "merge"
    return "shrink" if na == nb else "unmap"


class _Group:
    """An open change group of one tree: its cause, span and undo log."""

    __slots__ = ("key", "ts", "ts_end", "tid", "tgid", "cause", "row", "name", "args", "moved", "lo", "hi", "undo")

    def __init__(self, key, ts, tid, tgid, cause, row, name, args, moved) -> None:
        self.key, self.ts, self.ts_end, self.tid, self.tgid, self.cause = key, ts, ts, tid, tgid, cause
        self.row, self.name, self.args, self.moved = row, name, args, moved
        self.lo, self.hi = _NOSPAN, 0
        # (lo, hi, starts, ends, vals): before a change, the pieces of [lo, hi)
        # (which then hold only pieces inside it): undone newest first.
        self.undo: list[tuple] = []


def _window(starts, ends, vals, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
    """VMAs of the pieces overlapping [lo, hi), plus one neighbour on each side (merges);
    the whole tree when lo >= hi."""
    if lo >= hi:
        return _vmas(starts, ends, vals)
    i0 = bisect_left(ends, lo) - 1
    if i0 < 0:
        i0 = 0
    i1 = bisect_right(starts, hi) + 1
    return _vmas(starts[i0:i1], ends[i0:i1], vals[i0:i1])


def _chains(S, E, V, k: int) -> bool:
    """Does piece k + 1 continue piece k's VMA (same pointer and flags, adjacent)?"""
    if k + 1 >= len(S):
        return False
    v, w = V[k], V[k + 1]
    return bool(v[0]) and v[0] == w[0] and v[1] == w[1] and E[k] == S[k + 1]


class ChangeObserver:
    """Collects change rows (tuples in :data:`CHANGE_COLUMNS` order) while an
    :class:`Engine` replays; ``rows`` is emptied by whoever consumes them."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.sc = engine.sc
        self.open: dict[int, _Group] = {}  # tree uid -> open group
        self.tree: dict[int, VmaTree] = {}  # tree uid -> tree, for the open groups
        self.label: dict[int, str] = {}  # tree uid -> how it was born
        self.owner: dict[int, int] = {}  # tree uid -> tgid
        self.rows: list[tuple] = []
        self._ts = self._tid = self._tgid = self._cur = self._cause = ()
        self._args: list[tuple] = []

    # -- per window ----------------------------------------------------------------
    def load(self, w) -> None:
        """The columns of window ``w`` the hooks read, as lists by record."""
        c = w.cols
        sc = self.sc = self.e.sc
        self._args = list(zip(*(sc[k] for k in ("arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "ret")))) \
            if len(w.sc.get("ts", ())) else []
        self._ts = c["ts"].tolist()
        if w.w is not None:
            self._tid, self._tgid, self._cur, self._cause = (c[k].tolist() for k in ("tid", "tgid", "cur", "cause"))
        else:
            self._tid = self._tgid = self._cur = self._cause = ()

    def ts_of(self, k: int) -> int:
        return self._ts[k]

    # -- groups ----------------------------------------------------------------------
    def _pid(self, t: VmaTree, fallback: int) -> int:
        p = self.owner.get(t.uid)
        if p is None:
            for tgid, bt in self.e.bind.items():
                if bt is t:
                    return tgid
            return fallback
        return p

    def _open(self, t: VmaTree, key, ts: int, tid: int, tgid: int, cause: str, row: int) -> _Group:
        g = self.open.get(t.uid)
        if g is not None:
            if g.key == key:
                return g
            self._close(t)
        if row >= 0:
            name = self.sc["syscall"][row]
            args = self._args[row]
            moved = name == "mremap" and args[6] >= 0 and args[6] != args[0]
        else:
            name, args, moved = "", _NO_ARGS, False
        g = self.open[t.uid] = _Group(key, ts, tid, tgid, cause, row, name, args, moved)
        self.tree[t.uid] = t
        return g

    @staticmethod
    def _span(g: _Group, lo: int, hi: int) -> None:
        if lo < g.lo:
            g.lo = lo
        if hi > g.hi:
            g.hi = hi

    @staticmethod
    def _keep(g: _Group, t: VmaTree, lo: int, hi: int) -> None:
        """Log the pieces of ``t`` that a change of [lo, hi) is about to overwrite."""
        starts, ends = t.starts, t.ends
        i = bisect_right(ends, lo)
        j = bisect_left(starts, hi, i)
        if i == j:
            g.undo.append((lo, hi, (), (), ()))
        else:
            s0, e1 = starts[i], ends[j - 1]
            g.undo.append((s0 if s0 < lo else lo, e1 if e1 > hi else hi, starts[i:j], ends[i:j], t.vals[i:j]))

    def _diff(self, t: VmaTree, g: _Group) -> tuple[list, list]:
        """(VMAs that went away, VMAs that appeared) in the group's span, each sorted.

        The span's VMAs, plus one neighbour on each side (merges), before and
        after the group (:func:`_window`); the old pieces come from the tree
        now with the group's undo log applied there.  Pieces the group did
        not touch are the same objects in both and cancel: only the stretch
        between the first and last piece that differ (widened to whole
        chains of one VMA's pieces) is joined into VMAs and compared."""
        undo = g.undo
        if not undo:
            return [], []
        lo, hi = g.lo, g.hi
        S, E, V = t.starts, t.ends, t.vals
        if lo == _NOSPAN or lo >= hi:
            lo, hi = 0, _WHOLE  # no span known: compare whole trees
        L, H = lo, hi
        for u in undo:
            if u[0] < L:
                L = u[0]
            if u[1] > H:
                H = u[1]
        # the old state of [L, H) and two pieces beyond on each side (the
        # window's neighbours): the tree now, with the group undone there
        x0 = max(0, bisect_left(E, L) - 2)
        x1 = min(len(S), bisect_right(S, H) + 2)
        bs, be, bv = S[x0:x1], E[x0:x1], V[x0:x1]
        for a, b, os_, oe, ov in reversed(undo):
            i = bisect_right(be, a)
            j = bisect_left(bs, b, i)
            bs[i:j] = os_
            be[i:j] = oe
            bv[i:j] = ov
        # the span windows (as _window): [i0, i1) after, [j0, j1) before
        i0 = max(0, bisect_left(E, lo) - 1)
        i1 = min(len(S), bisect_right(S, hi) + 1)
        j0 = max(0, bisect_left(be, lo) - 1)
        j1 = min(len(bs), bisect_right(bs, hi) + 1)
        # common prefix and suffix of identical pieces
        na, nb = i1 - i0, j1 - j0
        n = na if na < nb else nb
        p = 0
        while p < n and S[i0 + p] == bs[j0 + p] and E[i0 + p] == be[j0 + p] and V[i0 + p] is bv[j0 + p]:
            p += 1
        q = 0
        while q < n - p and S[i1 - 1 - q] == bs[j1 - 1 - q] and E[i1 - 1 - q] == be[j1 - 1 - q] \
                and V[i1 - 1 - q] is bv[j1 - 1 - q]:
            q += 1
        # Keep the last common piece of each side in the compared stretch and
        # widen it to whole VMAs (pieces of one VMA are joined: _vmas); the
        # pieces looked at are common to both sides, so is their chaining.
        if p:
            p -= 1
            while p and _chains(S, E, V, i0 + p - 1):
                p -= 1
        if q:
            q -= 1
            while q and _chains(S, E, V, i1 - q - 1):
                q -= 1
        before = _vmas(bs[j0 + p:j1 - q], be[j0 + p:j1 - q], bv[j0 + p:j1 - q])
        after = _vmas(S[i0 + p:i1 - q], E[i0 + p:i1 - q], V[i0 + p:i1 - q])
        if len(before) == 1 and len(after) == 1:
            return ([], []) if before == after else (before, after)
        bset, aset = set(before), set(after)
        return sorted(bset - aset), sorted(aset - bset)

    def _close(self, t: VmaTree, *, force_kind: str | None = None, ts_end: int | None = None) -> None:
        g = self.open.pop(t.uid, None)
        if g is None:
            return
        del self.tree[t.uid]
        removed, added = self._diff(t, g)
        kind = force_kind or classify(removed, added, moved=g.moved)
        if kind is None:
            return
        lbl = self.label.get(t.uid)
        if lbl is not None and lbl in _SETUP and t.uid not in self.owner and kind != "exit":
            kind = lbl  # stores into a new tree before its fork/exec event: all setup
        elif (kind == "protect" and [x[3] & VMA_PERM_BITS for x in removed] == [x[3] & VMA_PERM_BITS for x in added]
              and [x[2] for x in removed] != [x[2] for x in added]):
            kind = "map"  # same ranges and perms, new VMAs: a mapping replaced in place
        cause = g.cause
        if cause == "kernel" and kind == "expand" and any(f & VM_GROWSDOWN for *_, f in added):
            cause = "stack_growth"
        if removed and added:
            lo_, hi_ = min(removed[0][0], added[0][0]), max(removed[-1][1], added[-1][1])
        elif removed:
            lo_, hi_ = removed[0][0], removed[-1][1]
        elif added:
            lo_, hi_ = added[0][0], added[-1][1]
        else:
            lo_ = hi_ = 0
        P = _PERMS
        # A tuple in CHANGE_COLUMNS order: a dict per row cost twice the time
        # and memory on million-event traces.
        self.rows.append((
            g.ts, ts_end if ts_end is not None else g.ts_end,
            self._pid(t, g.tgid), g.tid, t.ptr or 0, cause, kind, g.name, *g.args,
            lo_, hi_, len(removed), len(added),
            sum([x[1] - x[0] for x in removed]), sum([x[1] - x[0] for x in added]),
            [(x[0], x[1], P[x[3] & MAPS_PERM_BITS]) for x in removed],
            [(x[0], x[1], P[x[3] & MAPS_PERM_BITS]) for x in added],
            removed,  # before_vmas: (start, end, vma pointer, vm_flags)
            added,
        ))

    # -- engine hooks ----------------------------------------------------------
    def born(self, t: VmaTree, ts: int, tgid: int, label: str) -> None:
        self.label[t.uid] = label

    def write(self, t: VmaTree, k: int, lo: int, hi: int, val) -> None:
        """Record ``k`` of the window, a store of ``val`` (None: a clear) over [lo, hi), is about to be applied."""
        cause = self._cause[k]
        lbl = self.label.get(t.uid)
        if lbl is not None and lbl in _SETUP and t.ptr != self._cur[k]:
            key = ("k", lbl)
        elif cause >= 0:
            key = ("sc", self.sc["seq"][cause])
        else:
            key = ("k", self._tid[k])
        g = self.open.get(t.uid)
        if g is None or g.key != key:
            ts, tid = self._ts[k], self._tid[k]
            if key[0] == "sc":
                g = self._open(t, key, ts, tid, self._tgid[k], self.sc["syscall"][cause], cause)
            else:
                g = self._open(t, key, ts, tid, self._tgid[k], lbl if key[1] == lbl else "kernel", -1)
        g.ts_end = self._ts[k]
        if lo < g.lo:
            g.lo = lo
        if hi > g.hi:
            g.hi = hi
        # the pieces this store overwrites (ChangeObserver._keep, inlined)
        starts, ends = t.starts, t.ends
        i = bisect_right(ends, lo)
        j = bisect_left(starts, hi, i)
        if i == j:
            if val is not None:
                g.undo.append((lo, hi, (), (), ()))
        else:
            s0, e1 = starts[i], ends[j - 1]
            g.undo.append((s0 if s0 < lo else lo, e1 if e1 > hi else hi, starts[i:j], ends[i:j], t.vals[i:j]))

    def before(self, t: VmaTree, lo: int, hi: int) -> None:
        """An exit-time correction is about to overwrite [lo, hi) of ``t``."""
        g = self.open.get(t.uid)
        if g is not None:
            self._keep(g, t, lo, hi)

    def before_whole(self, t: VmaTree) -> None:
        """``t`` is about to lose pieces anywhere (fork: VM_DONTCOPY pieces dropped)."""
        g = self.open.get(t.uid)
        if g is not None:
            g.undo.append((0, _WHOLE, t.starts[:], t.ends[:], t.vals[:]))

    def syscall_exit_begin(self, t: VmaTree, row: int) -> None:
        sc = self.sc
        name = sc["syscall"][row]
        g = self._open(t, ("sc", sc["seq"][row]), sc["ts_enter"][row], sc["tid"][row], sc["tgid"][row], name, row)
        g.ts_end = sc["ts"][row]
        # What the exit-time fix-up may touch (see mmtrace.model.rules).
        a0, a1, ret = sc["arg0"][row], sc["arg1"][row], sc["ret"][row]
        if name in ("mprotect", "pkey_mprotect") and sc["arg2"][row] & PROT_GROWSDOWN:
            self._span(g, 0, a0 + a1 + _PAGE)  # from the stack VMA's start (Engine._protect_walk)
        elif name in ("munmap", "mprotect", "pkey_mprotect", "madvise", "mseal"):
            self._span(g, a0, a0 + a1 + _PAGE)
        elif name == "mremap":
            self._span(g, a0, a0 + a1 + _PAGE)
            if 0 <= ret < (1 << 63):
                self._span(g, ret, ret + sc["arg2"][row] + _PAGE)
        elif name == "mmap" and 0 <= ret < (1 << 63):
            self._span(g, ret, ret + a1 + _PAGE)
        else:
            self._span(g, 0, 1 << 64)  # brk and the rest: compare whole trees

    def syscall_exit_end(self, t: VmaTree, row: int) -> None:
        self._close(t)

    def touch(self, t: VmaTree, lo: int, hi: int, ts: int, tgid: int) -> None:
        g = self.open.get(t.uid)
        if g is None:
            g = self._open(t, ("k", "fork_copy"), ts, tgid, tgid, "fork_copy", -1)
        self._span(g, lo, hi)

    def fork_done(self, t: VmaTree, ts: int, child: int) -> None:
        self.owner[t.uid] = child
        if t.uid in self.open:
            self._close(t, force_kind="fork_copy", ts_end=ts)

    def exec_done(self, t: VmaTree, ts: int, tgid: int) -> None:
        self.owner[t.uid] = tgid
        if t.uid in self.open:
            self._close(t, force_kind="exec_setup", ts_end=ts)

    def exit(self, t: VmaTree, ts: int) -> None:
        self._close(t)
        had = len(t) > 0
        g = self._open(t, ("k", "exit"), ts, 0, self._pid(t, 0), "exit", -1)
        self._span(g, 0, 1 << 64)
        if had:
            g.undo.append((0, _WHOLE, t.starts, t.ends, t.vals))
        t.starts, t.ends, t.vals = [], [], []  # what exit_mmap leaves; the engine drops it too
        self._close(t, force_kind="exit" if had else None, ts_end=ts)

    def finish(self) -> None:
        """Close the groups still open at the end of the trace (trees still live)."""
        live = {id(x) for x in self.e.trees.values()}
        for uid in list(self.open):
            t = self.tree[uid]
            if id(t) in live:
                self._close(t)
            else:
                self.open.pop(uid)
                del self.tree[uid]


_INT64 = ("ts", "ts_end", "pid", "tid", "ret", "n_before", "n_after")
_UINT64 = ("tree", "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "lo", "hi", "bytes_before", "bytes_after")


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """The change rows as a DataFrame with :data:`CHANGE_COLUMNS` (unsorted)."""
    if not rows:
        cols = {c: np.zeros(0, np.int64 if c in _INT64 else np.uint64) if c in _INT64 + _UINT64
                else pd.Series([], dtype=object) for c in CHANGE_COLUMNS}
        return pd.DataFrame(cols, columns=list(CHANGE_COLUMNS))
    data = {}
    for c, v in zip(CHANGE_COLUMNS, zip(*rows)):
        if c in _INT64:
            data[c] = np.array(v, dtype=np.int64)
        elif c in _UINT64:
            data[c] = np.array(v, dtype=np.uint64)
        else:
            data[c] = list(v)  # lists of tuples stay one object per row
    return pd.DataFrame(data, columns=list(CHANGE_COLUMNS))


def iter_changes(trace, *, window: int | None = None) -> Iterator[pd.DataFrame]:
    """The change rows of ``trace`` window by window (memory: live VMAs + one window).

    One :meth:`Engine.run_lists` pass over :meth:`Source.windows` with a
    :class:`ChangeObserver`; yields, after each window, the changes completed
    in it (columns as :func:`changes`, in completion order: a group still
    open at a window's end is yielded with the window that ends it).
    ``window``: tree writes per window (default: the model's).
    """
    from .model import DEFAULT_CHECKPOINT_EVERY

    src = Source(trace, with_causes=True)
    try:
        snaps = trace.snapshots()
    except Exception:  # a trace without procfs tables
        snaps = None
    e = Engine(src, snapshot_trees(snaps))
    obs = ChangeObserver(e)
    e.observer = obs
    with no_gc():
        for w in src.windows(window or DEFAULT_CHECKPOINT_EVERY):
            e.apply(w)
            if obs.rows:
                rows, obs.rows = obs.rows, []
                yield _frame(rows)
        obs.finish()
        if obs.rows:
            yield _frame(obs.rows)
            obs.rows = []


def changes(trace, pid: int | None = None, *, window: int | None = None) -> pd.DataFrame:
    """One row per change of a tree, grouped by cause; all processes, or tgid ``pid``.

    Columns: ``ts``, ``ts_end`` (first and last event of the group), ``pid``
    (tgid owning the tree), ``tid``, ``tree`` (maple tree pointer), ``cause``
    (the syscall name, or ``fork_copy``, ``exec_setup``, ``exit``,
    ``stack_growth``, ``kernel``), ``kind`` (map, unmap, split, merge,
    expand, shrink, move, protect, fork_copy, exec_setup, exit),
    ``syscall`` and ``arg0``..``arg5``, ``ret`` (empty/0 for kernel paths),
    ``lo``/``hi`` (the span of the VMAs that changed), ``n_before``,
    ``n_after``, ``bytes_before``, ``bytes_after``, ``before``/``after``
    (lists of (start, end, perms) of the VMAs that went away / appeared),
    ``before_vmas``/``after_vmas`` (the same VMAs as (start, end, vma
    pointer, vm_flags)).  Sorted by ``ts`` (stable).  See :func:`iter_changes`
    for the same rows window by window.
    """
    parts = list(iter_changes(trace, window=window))
    df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else _frame([])
    df = df.sort_values("ts", kind="stable", ignore_index=True)
    if pid is not None:
        df = df[df["pid"] == int(pid)].reset_index(drop=True)
    return df
