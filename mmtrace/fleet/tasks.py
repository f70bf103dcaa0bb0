"""What a Dask worker runs: one trace in, small frames out.

Plain functions of a path (no Dask here), so any worker that has mmtrace
installed and can read the trace runs them, and a test can call them
directly.  The analyses are the per-trace API's own
(:func:`mmtrace.report.table`, :meth:`ReportData.vma_counts`): nothing is
recomputed differently for a fleet.
"""

from __future__ import annotations

import glob
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "TABLES",
    "ID_COLUMNS",
    "TraceResult",
    "find_traces",
    "trace_ids",
    "analyse",
    "with_ids",
    "event_parts",
    "read_event_parts",
]

#: The fleet's tables: the report's tables (``mmtrace.report.TABLES``, columns
#: in the README) and ``vma_counts`` (:meth:`mmtrace.report.ReportData.vma_counts`).
TABLES = ("processes", "changes", "splits", "merges", "anomalies", "hugetlb", "vmas", "vma_counts")

#: Columns put in front of every fleet table: which trace a row comes from.
#: ``trace`` is the trace directory's path (the key: one host can have many
#: traces); ``host``, ``boot_id`` and ``kernel`` (its ``kernel_release``) are
#: from the trace's metadata.json.
ID_COLUMNS = ("trace", "host", "boot_id", "kernel")


@dataclass
class TraceResult:
    """One trace's analysis, as a worker returns it.

    ``tables``: {name: DataFrame} (ID_COLUMNS first, categoricals decoded to
    their values); ``summary``: one row of the fleet summary (see
    :func:`analyse`); ``error``: why the trace could not be analysed (then
    ``tables`` is empty).
    """

    path: str
    summary: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    error: str = ""


def find_traces(specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Trace directories named by ``specs`` (paths or glob patterns).

    A directory holding ``metadata.json`` is a trace; any other directory
    stands for every trace below it.  Returns (trace paths, sorted and
    absolute; [(spec, reason)] for specs that name no trace).
    """
    found: list[str] = []
    missing: list[tuple[str, str]] = []
    for spec in specs:
        spec = os.path.expanduser(str(spec))
        matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        if not matches:
            missing.append((spec, "no file matches this pattern"))
            continue
        for m in matches:
            p = Path(m)
            if (p / "metadata.json").is_file():
                found.append(str(p.resolve()))
            elif p.is_dir():
                below = sorted(str(q.parent.resolve()) for q in p.rglob("metadata.json"))
                if not below:
                    missing.append((m, "no trace in this directory (no metadata.json below it)"))
                found.extend(below)
            elif p.exists():
                missing.append((m, "not a trace directory"))
            else:
                missing.append((m, "no such file or directory"))
    # One trace named twice (a directory and a trace in it) is analysed once.
    return list(dict.fromkeys(found)), missing


def trace_ids(trace) -> dict[str, str]:
    """The ID_COLUMNS of an opened trace, from its metadata ("" where absent)."""
    m = trace.metadata
    return {"trace": str(trace.path), "host": str(m.get("host") or ""), "boot_id": str(m.get("boot_id") or ""),
            "kernel": str(m.get("kernel_release") or "")}


def with_ids(df: pd.DataFrame, ids: dict[str, str]) -> pd.DataFrame:
    """``df`` with the ID_COLUMNS in front and categorical columns as their values.

    Each trace has its own categories, so a fleet keeps the values (the
    concatenation of per-trace frames would turn them to strings anyway).
    """
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(out[c].cat.categories.dtype)
    for i, c in enumerate(ID_COLUMNS):
        out.insert(i, c, pd.Series([ids[c]] * len(out), index=out.index, dtype="str"))
    return out


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def analyse(path: str, tables: tuple[str, ...] = TABLES) -> TraceResult:
    """Open the trace at ``path`` and compute its ``tables``: the unit of work of a fleet.

    Never raises for a bad trace: any failure to open or replay it is
    returned in ``error`` (one line).  ``summary`` keys: ``trace``,
    ``host``, ``boot_id``, ``kernel``, ``status`` ("ok"; "damaged": the
    trace loaded with warnings, e.g. a damaged part skipped or an
    incomplete recording; "partial": some table could not be computed;
    "failed"), ``error``, ``warnings`` (" | "-joined), ``events`` (rows in
    the trace), ``lost``, ``seconds`` (recorded), ``processes``,
    ``changes``, ``splits``, ``merges`` (points), ``anomalies``,
    ``vmas_peak`` (most VMAs of one process), ``analysis_s`` (this task's
    wall time).
    """
    from ..api import open as mm_open
    from ..report import ReportData, table

    t0 = time.perf_counter()
    res = TraceResult(path=str(path))
    s = res.summary
    s.update(trace=str(path), host="", boot_id="", kernel="", status="failed", error="", warnings="")
    # Damage is reported as warnings (reader: skipped parts, incomplete
    # recording): keep them for the summary instead of losing them in a
    # worker's log.  Workers run one task per process here (LocalCluster:
    # one thread per worker), so the process-wide filter is this task's.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trace = mm_open(path)
            ids = trace_ids(trace)
            s.update(ids)
            m = trace.metadata
            s["events"] = int(sum((m.get("events") or {}).values()))
            s["lost"] = int(sum(trace.lost.values()))
            start, stop = int(m.get("start_ns") or 0), int(m.get("stop_ns") or 0)
            s["seconds"] = (stop - start) / 1e9 if start and stop else float("nan")
            rd = ReportData(trace)
            frames = {}
            for name in tables:
                if name == "vma_counts":
                    vc = rd.safe("vma_counts")
                    df = vc if vc is not None else pd.DataFrame(columns=["ts", "pid", "vmas", "mapped"])
                else:
                    df = table(rd, name)
                frames[name] = with_ids(df, ids)
        except Exception as e:  # noqa: BLE001 - any failure of one trace must not stop the fleet
            res.error = s["error"] = _one_line(e)
            frames = {}
    s["warnings"] = " | ".join(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    if not res.error:
        res.tables = frames
        p = frames.get("processes")
        s["processes"] = len(p) if p is not None else np.nan
        for name in ("changes", "anomalies"):
            if name in frames:
                s[name] = len(frames[name])
        for name in ("splits", "merges"):
            if name in frames:
                s[name] = int(frames[name]["count"].sum()) if len(frames[name]) else 0
        if p is not None and "vmas_peak" in p:
            s["vmas_peak"] = int(p["vmas_peak"].max()) if len(p) else 0
        if rd.errors:
            s["status"] = "partial"
            s["error"] = "; ".join(f"{k}: {v}" for k, v in rd.errors.items())
        else:
            s["status"] = "damaged" if s["warnings"] else "ok"
    s["analysis_s"] = time.perf_counter() - t0
    return res


def event_parts(path: str, kind: str) -> tuple[dict[str, str], list[tuple[str, object, int]], list[tuple[str, str]]]:
    """The Parquet parts of ``events/<kind>/`` of one trace, read from their footers only.

    Returns (ID_COLUMNS of the trace, [(part path, Arrow schema, rows)],
    [(path, reason)] for parts whose footer cannot be read, or for the
    trace itself when its metadata cannot be read: then there are no parts).
    """
    import pyarrow.parquet as pq

    from ..trace.reader import TraceFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an incomplete recording: its flushed parts are what there is
            trace = TraceFile(path)
    except Exception as e:  # noqa: BLE001 - reported by the caller with the path
        return dict.fromkeys(ID_COLUMNS, ""), [], [(str(path), _one_line(e))]
    ids = trace_ids(trace)
    good, bad = [], []
    for p in sorted((Path(path) / "events" / kind).glob("part-*.parquet")):
        try:
            md = pq.read_metadata(p)
            good.append((str(p), md.schema.to_arrow_schema().remove_metadata(), md.num_rows))
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
            bad.append((str(p), _one_line(e)))
    return ids, good, bad


def read_event_parts(job: tuple[dict[str, str], list[tuple[str, tuple[str, ...]]]], schema=None,
                     later: dict[str, int] | None = None) -> pd.DataFrame:
    """Parts of one trace (``job`` = (ID_COLUMNS values, [(part path, the later
    fields it lacks)])) as one frame, ID_COLUMNS in front; with ``schema``
    (Arrow) every part is read as that, a field added later (``later``: name ->
    the value that means "not recorded", events.schema.LATER_FIELDS) that an
    older part lacks filled with that value."""
    import pyarrow as pa

    ids, parts = job
    tables = [_read_part(p, absent, schema, later or {}) for p, absent in parts]
    df = pa.concat_tables(tables).to_pandas() if tables else schema.empty_table().to_pandas()
    return with_ids(df, ids)


def _read_part(path: str, absent: tuple[str, ...], schema, later: dict[str, int]):
    """One part as ``schema`` (None: as stored), the later fields it lacks
    (``absent``, from its footer: Fleet.events) filled (read_event_parts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if schema is None:
        return pq.read_table(path)
    fill = [f for f in schema if f.name in absent and f.name in later]
    if not fill:
        return pq.read_table(path, schema=schema)
    t = pq.read_table(path, schema=pa.schema([f for f in schema if f.name not in absent]))
    cols = {f.name: pa.array([later[f.name]] * t.num_rows, type=f.type) for f in fill}
    return pa.table([cols[f.name] if f.name in cols else t.column(f.name) for f in schema], schema=schema)
