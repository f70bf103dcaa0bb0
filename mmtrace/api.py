"""The user-facing entry points: ``mmtrace.open`` and ``mmtrace.stream``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .trace.reader import TraceFile

DEFAULT_BUFFER_MB = 32  # mirrors mmtrace.capture.loader, which needs bcc to import

__all__ = ["Trace", "open", "stream"]


class Trace(TraceFile):
    """A recorded trace.  See :class:`mmtrace.trace.reader.TraceFile` for the tables."""

    def vmas(self, pid: int, at: int) -> pd.DataFrame:
        """VMAs of process ``pid`` (tgid) at CLOCK_MONOTONIC ``at`` ns, as /proc/PID/maps would show.

        Columns: ``start``, ``end`` (uint64, end exclusive), ``perms``
        (e.g. ``r-xp``), ``vm_flags``, ``pgoff`` (bytes), ``dev``, ``inode``,
        ``path`` (from snapshots, where known), ``file`` ("dev:inode path"),
        ``vma`` (the kernel pointer; 0 when known only from a snapshot).
        The replay is checkpointed: many instants cost one pass.
        See :func:`mmtrace.model.vmas`.
        """
        from .model import vmas

        return vmas(self, pid, at)

    def changes(self, pid: int | None = None) -> pd.DataFrame:
        """One row per change of a VMA tree, grouped by cause.

        Columns: ``ts``, ``ts_end``, ``pid``, ``tid``, ``tree``, ``cause``
        (syscall name or kernel path: exec_setup, fork_copy, exit, stack
        growth...), ``kind`` (map, unmap, split, merge, expand, shrink, move,
        protect, fork_copy, exec_setup, exit), ``syscall``, ``arg0``..``arg5``,
        ``ret``, ``lo``/``hi`` (the affected range), ``n_before``/``n_after``,
        ``bytes_before``/``bytes_after``, ``before``/``after`` (lists of
        (start, end, perms) that went away / appeared).
        See :func:`mmtrace.model.changes`.
        """
        from .model import changes

        return changes(self, pid)

    def __repr__(self) -> str:
        n = sum((self.metadata.get("events") or {}).values())
        return f"<mmtrace.Trace {str(self.path)!r}: {n:,} events, kernel {self.metadata.get('kernel_release')}>"


def open(path: str | Path) -> Trace:  # noqa: A001 - mirrors builtins.open by design
    """Open a trace directory written by ``mmtrace record``."""
    return Trace(path)


def stream(
    command: list[str] | str | None = None,
    pids: list[int] | None = None,
    *,
    duration: float | None = None,
    interval: float = 1.0,
    buffer_mb: int = DEFAULT_BUFFER_MB,
) -> Iterator[dict[str, pd.DataFrame]]:
    """Trace live (root) and yield ``{kind: DataFrame}`` batches every ``interval`` seconds.

    Same targets as ``mmtrace record``: a command (started after the probes
    are attached), running pids, or neither for the whole system.  The frames
    have the columns of the stored tables (see TraceFile.events, without
    ``comm``).  Stops when the command exits, after ``duration``, or when
    the generator is closed.  Each batch also has ``"lost"``: a one-row frame
    of the kernel's lost-event counters so far.
    """
    import time

    from .capture.session import Session, Target

    if isinstance(command, str):
        import shlex

        command = shlex.split(command)
    with Session(Target(command=command, pids=list(pids or ())), buffer_mb=buffer_mb) as s:
        s.start()
        t0 = last = time.monotonic()
        while True:
            s.poll(100)
            now = time.monotonic()
            done = s.child_exited() or (duration is not None and now - t0 >= duration)
            if now - last >= interval or done:
                last = now
                out = s.batch()
                out["lost"] = pd.DataFrame([s.lost()])
                yield out
            if done:
                return
