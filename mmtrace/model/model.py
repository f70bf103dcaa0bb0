"""The model of a whole trace: every traced process's VMA tree at any instant.

:class:`Model` replays the trace once, window by window (see
:mod:`mmtrace.model.stream`: memory is O(one window + live VMAs)), keeping a
copy of the replay state after each window of ``checkpoint_every`` tree
writes; a query restores the nearest copy and replays at most one window,
re-read from the trace.  :meth:`Model.sweep` answers many sorted queries in
one streaming pass.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from .replay import Engine, snapshot_trees, tree_frame
from .stream import Source, no_gc
from .vmatree import VmaTree

__all__ = ["Model", "model_of", "vmas"]

DEFAULT_CHECKPOINT_EVERY = 16384


def _paths(trace) -> dict[tuple[int, int], str]:
    """(kernel dev_t, inode) -> path, from the recorder's /proc snapshots."""
    out: dict[tuple[int, int], str] = {}
    try:
        snaps = trace.snapshots()
    except Exception:  # a trace without procfs tables
        return out
    if snaps is None or len(snaps) == 0:
        return out
    f = snaps[snaps["inode"] != 0]
    for d, ino, p in zip(f["dev"].astype(str), f["inode"].tolist(), f["path"].astype(str)):
        ma, mi = (int(x, 16) for x in d.split(":"))
        out[((ma << 20) | mi, int(ino))] = p
    return out


class Model:
    """Rebuilt VMA trees of one trace.

    ``trace``: a :class:`mmtrace.trace.TraceFile` (or a duck-typed object
    with ``raw_events(kind)``, ``kinds``, ``metadata``, ``snapshots()``).
    ``checkpoint_every``: tree writes per window (and per state copy).
    """

    def __init__(self, trace, *, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        self.trace = trace
        self.source = Source(trace)
        try:
            snaps = trace.snapshots()
        except Exception:
            snaps = None
        self.initial: dict[int, VmaTree] = snapshot_trees(snaps)
        self.paths = _paths(trace)
        self.every = max(1, int(checkpoint_every))
        self._cps: list[dict] | None = None
        self._bounds: list[int] = []
        self.n_records = 0
        self.n_tree_write = 0

    def engine(self) -> Engine:
        """A fresh replay engine at the start of the trace (:meth:`Engine.run` streams it forward)."""
        e = Engine(self.source, self.initial)
        e.chunk = self.every
        return e

    def _pos(self, at: int) -> int:
        """The :attr:`Engine.pos` of the state at ``at``: every event with ts <= at applied."""
        return int(at)

    def build(self) -> None:
        """Replay once, keeping a state copy after every window."""
        if self._cps is not None:
            return
        e = self.engine()
        cps: list[dict] = []
        bounds: list[int] = []
        n = 0
        with no_gc():
            for w in self.source.windows(self.every):
                e.apply(w)
                n += len(w)
                if w.hi != np.inf:
                    cps.append(e.snapshot())
                    bounds.append(int(w.hi))
        self._cps, self._bounds = cps, bounds
        self.n_records = n
        self.n_tree_write = self.source.n_tree_write

    def engine_at(self, at: int) -> Engine:
        """An engine whose state is the state at ``at`` (CLOCK_MONOTONIC ns): every event with ts <= at applied."""
        self.build()
        at = int(at)
        k = bisect_right(self._bounds, at) - 1
        e = self.engine()
        if k >= 0:
            e.restore(self._cps[k])
        lo = self._bounds[k] if k >= 0 else -np.inf
        if at > lo:
            e.apply(self.source.window_between(lo, at))
        return e

    def vmas(self, pid: int, at: int) -> pd.DataFrame:
        """VMAs of process ``pid`` (tgid) at ``at``; see :func:`mmtrace.model.replay.tree_frame` for columns."""
        return tree_frame(self.engine_at(at).tree_of(int(pid)), self.paths)

    def sweep(self, queries: Iterable[tuple[int, int]], *, frames: bool = True) -> Iterator[tuple[int, int, object]]:
        """Answer ``(pid, at)`` queries, sorted by ``at``, in one streaming replay.

        Yields ``(pid, at, answer)``: a DataFrame as :meth:`vmas` (``frames``)
        or the raw ``(starts, ends, vals)`` lists of the tree (None if none).
        """
        qs = sorted(queries, key=lambda q: q[1])
        if not qs:
            return
        e = self.engine()
        qi = 0
        for w in self.source.windows(self.every):
            e.load(w)
            lists = w.lists()
            pos = 0
            while qi < len(qs) and (w.hi == np.inf or qs[qi][1] < w.hi):
                pid, at = qs[qi]
                stop = max(w.stop_at(at), pos)
                if stop > pos:
                    e.run_lists(tuple(x[pos:stop] for x in lists), pos)
                    pos = stop
                t = e.tree_of(int(pid))
                if frames:
                    yield pid, at, tree_frame(t, self.paths)
                else:
                    yield pid, at, None if t is None else (t.starts[:], t.ends[:], t.vals[:])
                qi += 1
            if pos < len(w):
                e.run_lists(tuple(x[pos:] for x in lists) if pos else lists, pos)
            if qi == len(qs):
                return


def model_of(trace) -> Model:
    """The (cached) :class:`Model` of ``trace``."""
    m = getattr(trace, "_mmtrace_model", None)
    if m is None:
        m = Model(trace)
        try:
            trace._mmtrace_model = m
        except AttributeError:
            pass
    return m


def vmas(trace, pid: int, at: int) -> pd.DataFrame:
    """VMAs of process ``pid`` (tgid) at CLOCK_MONOTONIC ``at`` in ``trace``.

    Columns: ``start``, ``end`` (uint64, end exclusive), ``perms`` (e.g.
    ``r-xp``), ``vm_flags``, ``pgoff`` (bytes), ``dev``, ``inode``, ``path``,
    ``file``, ``vma`` (kernel pointer; 0 when only known from a snapshot).
    Empty when the process has no known mm at ``at``.
    """
    return model_of(trace).vmas(pid, at)
