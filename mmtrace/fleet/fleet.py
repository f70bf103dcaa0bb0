"""A fleet: many traces analysed as Dask tasks, results as Dask DataFrames."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from ._dask import FleetError, connect, require
from ..events.schema import LATER_FIELDS
from .tasks import ID_COLUMNS, TABLES, analyse, event_parts, find_traces, read_event_parts

__all__ = ["Fleet", "open", "EVENT_ROWS_PER_PARTITION"]

#: Rows of one partition of :meth:`Fleet.events` (consecutive parts of one trace).
EVENT_ROWS_PER_PARTITION = 2_000_000

_SUMMARY_COLUMNS = ["trace", "host", "boot_id", "kernel", "status", "error", "warnings", "events", "lost", "seconds",
                    "processes", "changes", "splits", "merges", "anomalies", "vmas_peak", "analysis_s"]


def open(paths_or_glob, *, client=None, scheduler: str | None = None, n_workers: int | None = None,  # noqa: A001
         tables: tuple[str, ...] = TABLES) -> "Fleet":
    """The traces named by ``paths_or_glob`` (a path or glob pattern, or a list
    of them; a directory that is not a trace stands for every trace below it),
    analysed on Dask.

    ``client``: a ``distributed.Client`` to use; else one to ``scheduler``
    (``tcp://HOST:PORT`` of a running cluster: its workers need mmtrace and
    read access to the traces at the same paths), else a new
    ``LocalCluster`` of ``n_workers`` (default: one per core), closed with
    the fleet.  ``tables``: which of :data:`TABLES` to compute.
    Nothing is computed until a table, :meth:`Fleet.summary` or
    :meth:`Fleet.analyse` is asked for.  Raises :class:`FleetError` when
    Dask is not installed, no trace is found or the scheduler cannot be
    reached.
    """
    require()
    specs = [paths_or_glob] if isinstance(paths_or_glob, (str, Path)) else list(paths_or_glob)
    bad_tables = [t for t in tables if t not in TABLES]
    if bad_tables:
        raise FleetError(f"unknown fleet table {bad_tables[0]!r}; tables are {', '.join(TABLES)}")
    paths, missing = find_traces([str(s) for s in specs])
    if not paths:
        why = "; ".join(f"{s}: {r}" for s, r in missing) or "nothing given"
        raise FleetError(f"no trace found ({why})")
    own = client is None
    if own:
        client = connect(scheduler, n_workers)
    return Fleet(paths, client, tables=tuple(tables), missing=missing, own_client=own)


class Fleet:
    """Traces analysed as Dask tasks: one task per trace runs
    :func:`mmtrace.fleet.tasks.analyse` (open, replay, detectors: the
    per-trace API), and each table is a Dask DataFrame with one partition
    per trace that could be analysed, in :attr:`paths` order, with
    :data:`ID_COLUMNS` (``trace``, ``host``, ``boot_id``, ``kernel``) in
    front of the per-trace columns.  Use :func:`open` to make one.
    """

    def __init__(self, paths: list[str], client, *, tables: tuple[str, ...] = TABLES,
                 missing: list[tuple[str, str]] | None = None, own_client: bool = False) -> None:
        self.paths = list(paths)
        self.client = client
        self.tables = tables
        #: [(spec, reason)]: arguments of :func:`open` that named no trace.
        self.missing = list(missing or [])
        self._own = own_client
        self._futures = None
        self._summary: pd.DataFrame | None = None
        self._frames: dict[str, object] = {}

    # -- running ---------------------------------------------------------------------
    @property
    def dashboard(self) -> str | None:
        """The address of the Dask dashboard (live task stream and progress), when it runs."""
        try:
            return self.client.dashboard_link
        except Exception:  # noqa: BLE001 - no dashboard (bokeh missing, remote without one)
            return None

    def analyse(self, progress=None, on_result=None) -> "Fleet":
        """Run every trace's analysis (once) and wait for all of them.

        ``progress``: a :class:`mmtrace.report.progress.Progress`, updated as
        traces finish; ``on_result(summary_row: dict)`` is called for each
        trace as it finishes (e.g. to print failures at once).  A trace that
        fails is kept in :meth:`summary` with its reason; the rest go on.
        """
        if self._summary is not None:
            return self
        _, _, distributed = require()
        futs = self.client.map(analyse, self.paths, tables=self.tables, pure=False,
                               key=[f"mmtrace-analyse-{i}-{Path(p).name}" for i, p in enumerate(self.paths)])
        index = {f.key: i for i, f in enumerate(futs)}
        rows: list[dict | None] = [None] * len(futs)
        done = 0
        stage = progress.stage("traces") if progress is not None else None
        if stage is not None:
            stage.__enter__()
        try:
            for f in distributed.as_completed(futs):
                i = index[f.key]
                if f.status == "finished":
                    rows[i] = self.client.submit(_summary_of, f, pure=False).result()
                else:  # the task itself died (worker killed, out of memory): the trace failed
                    try:
                        f.result()
                        reason = f"task {f.status}"
                    except Exception as e:  # noqa: BLE001
                        reason = f"{type(e).__name__}: {' '.join(str(e).split())}"
                    rows[i] = {"trace": self.paths[i], "status": "failed", "error": reason}
                done += 1
                if progress is not None:
                    progress.update(done / len(futs))
                if on_result is not None:
                    on_result(rows[i])
        finally:
            if stage is not None:
                stage.__exit__(None, None, None)
        self._futures = [f if r.get("status") != "failed" else None for f, r in zip(futs, rows)]
        self._summary = pd.DataFrame(rows).reindex(columns=_SUMMARY_COLUMNS)
        for c in ("host", "boot_id", "kernel", "error", "warnings"):
            self._summary[c] = self._summary[c].fillna("")
        return self

    def summary(self) -> pd.DataFrame:
        """One row per trace (analysed on first call): ``trace``, ``host``,
        ``boot_id``, ``kernel``, ``status`` (ok, damaged, partial, failed),
        ``error``, ``warnings``, ``events``, ``lost``, ``seconds``,
        ``processes``, ``changes``, ``splits``, ``merges``, ``anomalies``,
        ``vmas_peak``, ``analysis_s``: see :func:`mmtrace.fleet.tasks.analyse`."""
        return self.analyse()._summary

    @property
    def failed(self) -> pd.DataFrame:
        """Traces that could not be analysed: ``trace``, ``error`` (one line)."""
        s = self.summary()
        return s.loc[s["status"] == "failed", ["trace", "error"]].reset_index(drop=True)

    # -- tables ----------------------------------------------------------------------
    def table(self, name: str):
        """Table ``name`` (one of :data:`TABLES`) of every analysed trace as a Dask DataFrame.

        Columns: :data:`ID_COLUMNS`, then the per-trace table's (README,
        "Reports and CSV columns"; ``vma_counts``: ``ts``, ``pid``, ``vmas``,
        ``mapped``), categoricals as their values.  Dtypes are those
        ``pandas.concat`` gives the per-trace frames; each partition is one
        trace's frame, held on the workers.
        """
        if name not in self.tables:
            raise KeyError(f"fleet table {name!r} was not computed; tables are {', '.join(self.tables)}")
        if name not in self._frames:
            self._frames[name] = self._table(name)
        return self._frames[name]

    def _table(self, name: str):
        _, dd, _ = require()
        self.analyse()
        good = [f for f in self._futures if f is not None]
        if not good:
            raise FleetError("no trace of the fleet could be analysed (see Fleet.failed)")
        parts = self.client.map(_pick, good, name=name, pure=False)
        heads = self.client.gather(self.client.map(_head, parts, pure=False))
        nonempty = [h for h, n in heads if n] or [h for h, _ in heads]
        # The dtypes pandas.concat gives the per-trace frames; zero-row frames
        # whose columns are object (an empty table) only count when all are.
        meta = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0]
        parts = self.client.map(_coerce, parts, dtypes=meta.dtypes.to_dict(), pure=False)
        with _exact_dtypes():
            return dd.from_delayed(parts, meta=meta, verify_meta=False)

    def processes(self):
        """:meth:`table` ``processes``: one row per process of each trace."""
        return self.table("processes")

    def changes(self):
        """:meth:`table` ``changes``: one row per change of a VMA tree."""
        return self.table("changes")

    def splits(self):
        """:meth:`table` ``splits``: one row per change that split VMAs."""
        return self.table("splits")

    def merges(self):
        """:meth:`table` ``merges``: one row per change that merged VMAs."""
        return self.table("merges")

    def anomalies(self):
        """:meth:`table` ``anomalies``: one row per finding."""
        return self.table("anomalies")

    def hugetlb(self):
        """:meth:`table` ``hugetlb``: one row per in-kernel hugetlb sample."""
        return self.table("hugetlb")

    def vmas(self):
        """:meth:`table` ``vmas``: every VMA's lifetime."""
        return self.table("vmas")

    def vma_counts(self):
        """:meth:`table` ``vma_counts``: VMAs of each process after each of its changes."""
        return self.table("vma_counts")

    # -- raw events ------------------------------------------------------------------
    def events(self, kind: str):
        """Raw events of ``kind`` of every trace as a lazy Dask DataFrame (no replay).

        Columns: :data:`ID_COLUMNS`, then the stored fields of the kind
        (``TraceFile.raw_events``; dictionary columns as their values), in
        trace then part order; each partition is consecutive parts of one
        trace, up to :data:`EVENT_ROWS_PER_PARTITION` rows.  Only the parts'
        footers are read here (on the workers).  Every part must have the
        same Arrow schema, else :class:`FleetError` names the first that
        differs; traces from different kernels are fine.  A trace whose
        metadata cannot be read, or a part whose footer cannot, is left out
        with a warning (and listed in :attr:`event_problems`).
        """
        from ..events.schema import KINDS

        _, dd, _ = require()
        if kind not in KINDS:
            raise KeyError(f"unknown event kind {kind!r}; kinds are {', '.join(KINDS)}")
        later = set(LATER_FIELDS.get(kind, {}))
        futs = self.client.map(event_parts, self.paths, kind=kind, pure=False)
        ref = ref_part = None
        jobs: list[tuple[dict, list[tuple[str, tuple[str, ...]]]]] = []
        problems: list[tuple[str, str]] = []
        for path, f in zip(self.paths, futs):
            try:
                ids, good, bad = f.result()
            except Exception as e:  # noqa: BLE001 - one unreadable trace must not hide the others
                problems.append((path, f"{type(e).__name__}: {' '.join(str(e).split())}"))
                continue
            problems.extend(bad)
            chunk: list[str] = []
            rows = 0
            for part, schema, n in good:
                if ref is None:
                    ref, ref_part = schema, part
                elif not _core(schema, later).equals(_core(ref, later)):
                    raise FleetError(f"{part}: schema differs from {ref_part}'s "
                                     f"({_schema_diff(_core(ref, later), _core(schema, later))})")
                elif len(set(schema.names) & later) > len(set(ref.names) & later):
                    ref, ref_part = schema, part  # a newer trace: the frame has its later fields
                if chunk and rows + n > EVENT_ROWS_PER_PARTITION:
                    jobs.append((ids, chunk))
                    chunk, rows = [], 0
                # the later fields this part lacks, known from its footer already
                chunk.append((part, tuple(sorted(later - set(schema.names)))))
                rows += n
            if chunk:
                jobs.append((ids, chunk))
        for p, why in problems:
            warnings.warn(f"{p}: left out of events({kind!r}): {why}", stacklevel=2)
        self.event_problems = problems
        if ref is None:
            from ..events.decode import to_frame

            # No part anywhere: the columns the recorder would have written.
            with _exact_dtypes():
                return dd.from_pandas(_with_empty_ids(to_frame(kind, _no_records(kind))), npartitions=1)
        meta = _with_empty_ids(ref.empty_table().to_pandas())
        with _exact_dtypes():
            return dd.from_map(read_event_parts, jobs, schema=ref, meta=meta, label=f"mmtrace-events-{kind}",
                               enforce_metadata=False, later=LATER_FIELDS.get(kind, {}))

    # -- report ----------------------------------------------------------------------
    def write_report(self, out_dir, progress=None):
        """Write the fleet report into ``out_dir``: see :func:`mmtrace.fleet.report.write_fleet_report`."""
        from .report import write_fleet_report

        return write_fleet_report(self, out_dir, progress=progress)

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        """Release the results; close the client and cluster if :func:`open` made them."""
        self._frames.clear()
        self._futures = None
        if self._own and self.client is not None:
            cluster = getattr(self.client, "cluster", None)
            self.client.close()
            if cluster is not None:
                cluster.close()
            self.client = None

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mmtrace.fleet.Fleet: {len(self.paths)} traces>"


def _exact_dtypes():
    """Dask otherwise turns object and str columns into pyarrow strings (its
    ``dataframe.convert-string``): the fleet keeps the per-trace dtypes, and
    object columns here hold lists (VMAs, exec), not only strings."""
    import dask

    return dask.config.set({"dataframe.convert-string": False})


# -- small worker-side helpers (module level: picklable by reference) ------------------
def _summary_of(res) -> dict:
    return res.summary


def _pick(res, name: str) -> pd.DataFrame:
    return res.tables[name]


def _head(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    return df.head(0), len(df)


def _coerce(df: pd.DataFrame, dtypes: dict) -> pd.DataFrame:
    diff = {c: d for c, d in dtypes.items() if c in df.columns and df[c].dtype != d}
    df = df.reindex(columns=list(dtypes)) if list(df.columns) != list(dtypes) else df
    return df.astype(diff) if diff else df


def _with_empty_ids(df: pd.DataFrame) -> pd.DataFrame:
    from .tasks import with_ids

    return with_ids(df, dict.fromkeys(ID_COLUMNS, ""))


def _no_records(kind: str):
    import numpy as np

    from ..events.schema import KINDS

    return np.zeros(0, dtype=KINDS[kind].dtype)


def _core(schema, later: set[str]):
    """``schema`` without the fields added to the kind later (LATER_FIELDS): traces
    written before a field existed lack it, which is no mismatch."""
    import pyarrow as pa

    keep = [f for f in schema if f.name not in later]
    return schema if len(keep) == len(schema) else pa.schema(keep)


def _schema_diff(a, b) -> str:
    """What differs between Arrow schemas ``a`` (expected) and ``b``, in a few words."""
    fa, fb = {f.name: f.type for f in a}, {f.name: f.type for f in b}
    out = [f"no {n}" for n in fa if n not in fb] + [f"extra {n}" for n in fb if n not in fa]
    out += [f"{n}: {fb[n]} not {fa[n]}" for n in fa if n in fb and fa[n] != fb[n]]
    return ", ".join(out) or "field order"
