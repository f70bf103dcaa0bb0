"""The model of a whole trace: every traced process's VMA tree at any instant.

:class:`Model` replays the trace once, keeping a copy of the replay state
every ``checkpoint_every`` records, so a query replays at most that many
records from the nearest copy; :meth:`Model.sweep` answers many sorted
queries in one pass.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from .replay import Engine, snapshot_trees, tree_frame
from .stream import Stream, build_stream
from .vmatree import VmaTree

__all__ = ["Model", "model_of", "vmas"]

DEFAULT_CHECKPOINT_EVERY = 65536


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
    """

    def __init__(self, trace, *, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        self.trace = trace
        self.stream: Stream = build_stream(trace)
        try:
            snaps = trace.snapshots()
        except Exception:
            snaps = None
        self.initial: dict[int, VmaTree] = snapshot_trees(snaps)
        self.paths = _paths(trace)
        self.every = max(1, int(checkpoint_every))
        self._cps: list[dict] | None = None
        self._cp_pos: list[int] = []

    def engine(self) -> Engine:
        """A fresh replay engine at the start of the trace."""
        return Engine(self.stream, self.initial)

    def _pos(self, at: int) -> int:
        # State at ``at``: every record with ts <= at applied.
        return int(np.searchsorted(self.stream.ts, np.int64(at), side="right"))

    def build(self) -> None:
        """Replay once, keeping a state copy every ``checkpoint_every`` records."""
        if self._cps is not None:
            return
        e = self.engine()
        cps = [e.snapshot()]
        n = len(self.stream.records)
        for stop in range(self.every, n + self.every, self.every):
            e.run(min(stop, n))
            if stop < n:
                cps.append(e.snapshot())
        self._cps = cps
        self._cp_pos = [c["pos"] for c in cps]

    def engine_at(self, at: int) -> Engine:
        """An engine whose state is the state at ``at`` (CLOCK_MONOTONIC ns)."""
        self.build()
        pos = self._pos(at)
        k = bisect_right(self._cp_pos, pos) - 1
        e = self.engine()
        e.restore(self._cps[max(k, 0)])
        e.run(pos)
        return e

    def vmas(self, pid: int, at: int) -> pd.DataFrame:
        """VMAs of process ``pid`` (tgid) at ``at``; see :func:`mmtrace.model.replay.tree_frame` for columns."""
        return tree_frame(self.engine_at(at).tree_of(int(pid)), self.paths)

    def sweep(self, queries: Iterable[tuple[int, int]], *, frames: bool = True) -> Iterator[tuple[int, int, object]]:
        """Answer ``(pid, at)`` queries, sorted by ``at``, in one replay.

        Yields ``(pid, at, answer)``: a DataFrame as :meth:`vmas` (``frames``)
        or the raw ``(starts, ends, vals)`` lists of the tree (None if none).
        """
        e = self.engine()
        for pid, at in sorted(queries, key=lambda q: q[1]):
            e.run(max(self._pos(at), e.pos))
            t = e.tree_of(int(pid))
            if frames:
                yield pid, at, tree_frame(t, self.paths)
            else:
                yield pid, at, None if t is None else (t.starts[:], t.ends[:], t.vals[:])




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
