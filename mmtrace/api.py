"""The user-facing entry points: ``mmtrace.open`` and ``mmtrace.stream``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .trace.reader import TraceFile

DEFAULT_BUFFER_MB = 32  # mirrors mmtrace.capture.loader, which needs bcc to import

__all__ = ["Trace", "open", "stream"]


class Trace(TraceFile):
    """A recorded trace.  See :class:`mmtrace.trace.reader.TraceFile` for the tables.

    Every analysis result is computed once and kept in one cache
    (:meth:`cached`); :attr:`model` is the rebuilt VMA trees.
    """

    def cached(self, name: str, fn):
        """``fn()`` computed once per trace under ``name`` (the one cache of the analyses)."""
        c = self.__dict__.setdefault("_analysis_cache", {})
        if name not in c:
            c[name] = fn()
        return c[name]

    @property
    def model(self):
        """The rebuilt VMA trees (:class:`mmtrace.model.Model`): ``vmas``, ``sweep``, ``engine_at``."""
        from .model import model_of

        return model_of(self)

    def skipped(self) -> dict[str, str]:
        """{analysis: why it cannot run on this trace}; see :mod:`mmtrace.detect.analyses`."""
        from .detect.analyses import skipped

        return skipped(self)

    @property
    def kernel(self):
        """The traced kernel's values (page size, mmap_min_addr, BTF offsets...): a
        :class:`mmtrace.trace.kernelinfo.KernelInfo`, raising when the trace lacks one."""
        from .trace.kernelinfo import KernelInfo

        return KernelInfo(self.metadata)

    def vmas(self, pid: int, at: int) -> pd.DataFrame:
        """VMAs of process ``pid`` (tgid) at CLOCK_MONOTONIC ``at`` ns, as /proc/PID/maps would show.

        Columns: ``start``, ``end`` (uint64, end exclusive), ``perms``
        (e.g. ``r-xp``), ``vm_flags``, ``pgoff`` (bytes), ``dev``, ``inode``,
        ``path`` (from snapshots, where known), ``file`` ("dev:inode path"),
        ``vma`` (the kernel pointer; 0 when known only from a snapshot),
        ``possibly_stale`` (True at or after a gap of a damaged trace).
        The replay is checkpointed: many instants cost one pass.
        See :func:`mmtrace.model.vmas`.
        """
        from .model import vmas

        df = vmas(self, pid, at)
        cut = self.model_reliable_until()
        # After a gap of a damaged trace the tree may miss changes (see gaps()).
        df["possibly_stale"] = cut is not None and int(at) >= cut
        return df

    def _all_changes(self) -> pd.DataFrame:
        from .model import changes

        return self.cached("changes", lambda: self._with_callsites(changes(self)))

    # -- record -g: call sites (mmtrace/detect/callsites.py) -------------------
    symfs: str | None = None  # where the traced binaries are (perf's --symfs); set before the first query

    def _with_callsites(self, ch: pd.DataFrame) -> pd.DataFrame:
        from .detect.callsites import annotate_changes

        return annotate_changes(self, ch, self.symfs)

    def stacks(self) -> pd.DataFrame:
        """The user stacks of a trace recorded with ``record -g``, one row per frame.

        Columns: ``stack_id`` (the ``stack_id`` of :meth:`changes`), ``depth``
        (0 innermost: the syscall wrapper), ``address`` (user address when first
        seen), ``path``, ``build_id``, ``offset`` (in the file), ``function``,
        ``func_offset``, ``symbol`` ("function+0xoff (binary)"), ``binary``,
        ``recovered`` (the caller of the wrapper, from the word at the user
        stack pointer).  Symbols come from the files at their recorded paths,
        or under :attr:`symfs`.  Empty without ``-g``.  See
        :mod:`mmtrace.detect.callsites`.
        """
        from .detect.callsites import stacks_of

        return stacks_of(self, self.symfs).frames

    def callsites(self, kind: str | None = None) -> pd.DataFrame:
        """Call sites ranked by the VMA changes they caused (``kind``: only those, e.g. "split").

        Columns: ``callsite``, ``function``, ``binary``, ``changes``, ``maps``,
        ``unmaps``, ``splits``, ``merges``, ``protects``, ``other``,
        ``vmas_alive`` (VMAs it made still mapped at the end), ``bytes_mapped``,
        ``pids``, ``stacks``.  See :func:`mmtrace.detect.callsites.callsites`.
        """
        from .detect.callsites import callsites

        return callsites(self, kind, ch=self._all_changes())

    def _points(self) -> list:
        """split_merge_table of all changes, made once for processes/splits/merges."""
        from .detect import split_merge_table

        return self.cached("points", lambda: split_merge_table(self._all_changes()))

    def changes(self, pid: int | None = None) -> pd.DataFrame:
        """One row per change of a VMA tree, grouped by cause.

        Columns: ``ts``, ``ts_end``, ``pid``, ``tid``, ``tree``, ``cause``
        (syscall name or kernel path: exec_setup, fork_copy, exit, stack
        growth...), ``kind`` (map, unmap, split, merge, expand, shrink, move,
        protect, fork_copy, exec_setup, exit), ``syscall``, ``arg0``..``arg5``,
        ``ret``, ``lo``/``hi`` (the affected range), ``n_before``/``n_after``,
        ``bytes_before``/``bytes_after``, ``before``/``after`` (lists of
        (start, end, perms) that went away / appeared); for a trace recorded
        with ``-g`` also ``stack_id`` (see :meth:`stacks`, -1 none) and
        ``callsite`` ("function+0xoff (binary)": the innermost frame outside
        libc/ld.so of the call that made it).
        See :func:`mmtrace.model.changes`.
        """
        ch = self._all_changes()
        return ch if pid is None else ch[ch["pid"] == int(pid)].reset_index(drop=True)

    def splits(self) -> pd.DataFrame:
        """One row per change that split VMAs (each ``__split_vma`` is one point in ``at``).

        Columns: ``ts``, ``ts_end``, ``pid``, ``tid``, ``comm``, ``cause``,
        ``syscall``, ``arg0``..``arg3``, ``ret``, ``kind``, ``count``, ``at``,
        ``before``/``after`` (lists of {start, end, perms, vm_flags, vma}),
        ``writes`` (the maple tree writes that showed it).
        See :func:`mmtrace.detect.splits`.
        """
        from .detect import splits

        return splits(self, self._all_changes(), self._points())

    def merges(self) -> pd.DataFrame:
        """One row per change that merged VMAs; columns as :meth:`splits`, ``kind`` is
        "merge" (adjacent VMAs joined) or "new_range_merge" (a new range taken
        into a neighbour).  See :func:`mmtrace.detect.merges`."""
        from .detect import merges

        return merges(self, self._all_changes(), self._points())

    def hugetlb(self) -> pd.DataFrame:
        """Modeled hugetlb reservations against the kernel's counters, one row per
        in-kernel sample.  See :func:`mmtrace.detect.hugetlb_accounting` for columns."""
        from .detect import hugetlb_accounting

        return self.cached("hugetlb", lambda: hugetlb_accounting(self))

    def anomalies(self) -> pd.DataFrame:
        """One row per finding: ``ts``, ``pid``, ``comm``, ``severity`` (error,
        warning, note: could not be decided, the explanation says why),
        ``kind`` (model_kernel_disagree, model_kernel_undecided,
        kernel_counter_underflow, negative_reservation, kernel_warning,
        unmapped_area_disagree, trace_damaged) and ``explanation`` (a
        sentence).  After a gap of a damaged trace (see ``gaps()``) model
        findings are left out and one ``trace_damaged`` row says so."""
        from .detect import hugetlb_anomalies

        rows = hugetlb_anomalies(self, self.hugetlb())
        ua = self.unmapped_area_check()
        for r in ua[~ua["agrees"]].itertuples(index=False) if len(ua) else ():
            rows.append({
                "ts": r.ts, "pid": r.pid, "severity": "warning", "kind": "unmapped_area_disagree",
                "explanation": (
                    f"vm_unmapped_area returned {r.addr:#x} (err {r.err}) for {r.length:#x} bytes in "
                    f"[{r.low_limit:#x}, {r.high_limit:#x}), but the rebuilt tree "
                    + ("has that range in use" if not r.free else "would give "
                       + (f"{r.expected:#x}" if r.expected else "-ENOMEM"))
                ),
            })
        df = pd.DataFrame(rows, columns=["ts", "pid", "severity", "kind", "explanation"])
        df = self.drop_stale_findings(df)  # no model finding across a gap of the trace
        df.insert(2, "comm", self.comm_at(df["pid"], df["ts"]))
        return df.sort_values("ts", kind="stable", ignore_index=True)

    def unmapped_area_check(self, fed=None) -> pd.DataFrame:
        """Each ``mmap:vm_unmapped_area`` checked against a first-fit search of the rebuilt
        tree.  See :func:`mmtrace.detect.unmapped_area_check` for columns; ``fed``:
        an :class:`mmtrace.detect.unmapped_area.UnmappedAreaCheck` a replay already
        answered (the report's changes pass), else the model replays once here."""
        from .detect import unmapped_area_check

        def check() -> pd.DataFrame:
            u = unmapped_area_check(self, fed)
            u["possibly_stale"] = self.after_gaps(u).to_numpy(bool)  # the tree may miss changes there
            return u

        return self.cached("unmapped_area", check)

    def processes(self, counts: bool = True) -> pd.DataFrame:
        """As :meth:`TraceFile.processes`, plus ``modelled`` (bool) and
        ``not_modelled_reason`` ("" when modelled: what the model cannot
        follow is said, see :func:`mmtrace.model.coverage.modelled`), and
        ``splits`` and ``merges`` per process (split/merge points found by
        :meth:`splits` / :meth:`merges`) when ``counts``."""
        from .model.coverage import modelled

        p = super().processes()
        m = getattr(self, "_modelled_cache", None)
        if m is None:
            m = self._modelled_cache = modelled(self, p["pid"]).set_index("pid")
        p["modelled"] = p["pid"].map(m["modelled"]).fillna(True).astype(bool)
        p["not_modelled_reason"] = p["pid"].map(m["not_modelled_reason"]).fillna("").astype(str)
        if not counts or len(p) == 0:
            return p
        from .detect import split_merge_counts

        # columnar over the change rows (not the per-change point lists splits()/merges() need)
        c = split_merge_counts(self._all_changes()).set_index("pid")
        p["splits"] = p["pid"].map(c["splits"]).fillna(0).astype("int64")
        p["merges"] = p["pid"].map(c["merges"]).fillna(0).astype("int64")
        return p

    def comm_at(self, pid, ts) -> list[str]:
        """The name each process ``pid`` had at ``ts`` (sequences); see :func:`mmtrace.model.names.comm_at`."""
        from .model.names import comm_at

        return comm_at(self, pid, ts)

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
