"""The fleet report: one Parquet dataset, a CSV summary, cross-host plots, a page.

Layout of ``OUT``:

    parquet/<table>/host=<host>/part-<N>.parquet   one file per trace (N: its index in the fleet);
                                                   hive-partitioned by host (URI-escaped), so
                                                   pyarrow.dataset, dask.dataframe.read_parquet,
                                                   DuckDB and Spark read each table as one dataset
    summary.csv                                    one row per trace, failed ones with their reason
    vma_counts.png, splits_merges.png, anomalies.png
    index.html                                     self-contained (images embedded)

Parquet types are those of ``mmtrace report --format parquet``
(:func:`mmtrace.report.arrow_table`): addresses uint64, lists as lists.
Each table is written by the workers that hold it.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from .tasks import TABLES

__all__ = ["write_fleet_report", "FleetReport", "STAGES"]

#: Progress stages (weights) of :func:`write_fleet_report`.
STAGES = {"traces": 6.0, "parquet": 2.0, "plots": 1.0}


@dataclass
class FleetReport:
    """What :func:`write_fleet_report` wrote: ``files`` {name: path};
    ``summary`` (the fleet summary); ``errors`` {what: message} of parts
    that could not be written (the rest is)."""

    out: Path
    files: dict = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    errors: dict = field(default_factory=dict)

    def text(self) -> str:
        """A few lines for the terminal: traces by status, files."""
        s = self.summary
        lines = [f"fleet report: {self.out}"]
        if s is not None:
            by = s["status"].value_counts()
            lines.append(f"  {len(s)} traces: " + ", ".join(f"{n} {k}" for k, n in by.items()))
            ok = s[s["status"] != "failed"]
            lines.append(f"  {int(ok['events'].sum()):,} events, {int(ok['processes'].sum()):,} processes, "
                         f"{int(ok['anomalies'].fillna(0).sum()):,} anomalies, hosts: {ok['host'].nunique()}, "
                         f"kernels: {ok['kernel'].nunique()}")
        lines.append("  " + ", ".join(sorted(p.name for p in self.files.values())))
        return "\n".join(lines)


def _write_part(df: pd.DataFrame, dataset: str, index: int) -> str | None:
    """Write one trace's frame of a table under ``dataset``; None when it has no rows."""
    import pyarrow.parquet as pq

    from ..report.export import arrow_table

    if not len(df):
        return None
    host = str(df["host"].iloc[0])
    d = Path(dataset) / f"host={quote(host, safe='')}"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"part-{index:06d}.parquet"
    pq.write_table(arrow_table(df.drop(columns=["host"])), path)
    return str(path)


def _write_tables(fleet, out: Path, rep: FleetReport, progress=None) -> None:
    """One dataset per table; the parts of one table must share their Arrow schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..report.export import arrow_table

    root = out / "parquet"
    shutil.rmtree(root, ignore_errors=True)  # a dataset is what this run wrote, nothing older
    names = list(fleet.tables)
    # Files are numbered by the trace's place in the fleet (failed ones included).
    analysed = [i for i, st in enumerate(fleet.summary()["status"]) if st != "failed"]
    for i, name in enumerate(names):
        try:
            ddf = fleet.table(name)
            parts = ddf.to_delayed()
            futs = fleet.client.compute([_delayed(_write_part)(p, str(root / name), j)
                                         for j, p in zip(analysed, parts)])
            written = [w for w in fleet.client.gather(futs) if w]
            if not written:
                # No rows in any trace: an empty file keeps the table's columns.
                (root / name).mkdir(parents=True, exist_ok=True)
                pq.write_table(arrow_table(ddf._meta.drop(columns=["host"])), root / name / "part-empty.parquet")
            else:
                # Parts of one table from traces whose frames differ in type
                # (a list that is empty everywhere in one trace) must still
                # read as one dataset: check now, say which.
                schemas = [pq.read_schema(w) for w in written]
                try:
                    pa.unify_schemas(schemas, promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                    rep.errors[f"parquet/{name}"] = f"parts differ in type ({e})"
            rep.files[f"parquet/{name}"] = root / name
        except Exception as e:  # noqa: BLE001 - one table must not lose the others
            rep.errors[f"parquet/{name}"] = f"{type(e).__name__}: {e}"
        if progress is not None:
            progress.update((i + 1) / len(names))


def _delayed(fn):
    import dask

    return dask.delayed(fn, pure=False)


def _aggregates(fleet) -> dict[str, object]:
    """The small frames the plots draw, computed on the cluster."""
    out = {}
    if "processes" in fleet.tables:
        p = fleet.processes()[["host", "comm", "vmas_peak", "splits", "merges"]]
        # An exact median is no tree reduction; two columns of the process table are small.
        per_host = p[["host", "vmas_peak"]].compute().groupby("host")["vmas_peak"]
        out["per_host"] = pd.DataFrame({"max": per_host.max(), "median": per_host.median(),
                                        "processes": per_host.size()})
        c = p.groupby("comm")[["splits", "merges"]].sum().compute()
        c["hosts"] = p.groupby("comm")["host"].nunique().compute()
        out["per_comm"] = c
    if "anomalies" in fleet.tables:
        a = fleet.anomalies()[["kernel", "kind"]]
        out["per_kernel"] = a.groupby(["kernel", "kind"]).size().compute().unstack(fill_value=0) \
            if len(a.columns) else pd.DataFrame()
    return out


def write_fleet_report(fleet, out_dir, progress=None) -> FleetReport:
    """Analyse ``fleet`` (a :class:`mmtrace.fleet.Fleet`) and write its report into ``out_dir``.

    See this module's docstring for the files.  A trace that fails is in
    ``summary.csv`` with its reason (status ``failed``) and the others are
    written; a table or plot that cannot be written is in the result's
    ``errors``.
    """
    import matplotlib.pyplot as plt

    from . import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = FleetReport(out=out)
    summary = fleet.analyse(progress=progress).summary()
    rep.summary = summary
    summary.to_csv(out / "summary.csv", index=False)
    rep.files["summary"] = out / "summary.csv"
    if (summary["status"] == "failed").all():
        rep.errors["tables"] = "no trace could be analysed"
        _write_index(out, fleet, rep, {})
        return rep
    if progress is not None:
        with progress.stage("parquet", STAGES["parquet"]):
            _write_tables(fleet, out, rep, progress)
    else:
        _write_tables(fleet, out, rep)
    images = {}
    try:
        agg = _aggregates(fleet)
    except Exception as e:  # noqa: BLE001
        rep.errors["plots"] = f"{type(e).__name__}: {e}"
        agg = {}
    ok = summary[summary["status"] != "failed"]
    figs = [
        ("vma_counts", "VMA counts by host", "per_host",
         lambda d, p: plots.vma_counts_by_host(d, p),
         "Peak VMAs of each traced process (as /proc/PID/maps would list them), largest and median per host."),
        ("splits_merges", "Splits and merges per process name", "per_comm",
         lambda d, p: plots.splits_merges_by_comm(d, p),
         "Split and merge points of every trace, summed per process name (comm), with the hosts it ran on."),
        ("anomalies", "Anomalies per kernel release", "per_kernel",
         lambda d, p: plots.anomalies_by_kernel(d, ok.groupby("kernel").size(), p),
         "Findings of the detectors (mmtrace report's anomalies) per analysed trace, by kernel release and kind."),
    ]
    for name, title, key, draw, caption in figs:
        if key not in agg:
            continue
        path = out / f"{name}.png"
        try:
            ax = draw(agg[key], path)
            plt.close(ax.figure)
            images[title] = (path, caption)
            rep.files[name] = path
        except Exception as e:  # noqa: BLE001 - one plot must not lose the others
            rep.errors[name] = f"{type(e).__name__}: {e}"
    if progress is not None:
        with progress.stage("plots", STAGES["plots"]):
            progress.update(1.0)
    _write_index(out, fleet, rep, images)
    return rep


def _write_index(out: Path, fleet, rep: FleetReport, images: dict) -> None:
    from ..report.html import _CSS, _img, _table

    e = html.escape
    s = rep.summary
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mmtrace fleet report</title>"
             f"<style>{_CSS}</style></head><body><h1>mmtrace fleet report: {len(s)} traces</h1>"]
    by = s["status"].value_counts()
    parts.append("<p>" + ", ".join(f"{n} {e(str(k))}" for k, n in by.items()) + " (ok: analysed cleanly; damaged: "
                 "loaded with warnings, e.g. parts skipped; partial: some table not computed; failed: not analysed)."
                 "</p>")
    bad = s[s["status"] != "ok"]
    if len(bad):
        parts.append("<h2 id='problems'>Traces with problems</h2><ul>" + "".join(
            f"<li class='err'><code>{e(r.trace)}</code>: {e(r.status)}: {e(r.error or r.warnings)}</li>"
            for r in bad.itertuples(index=False)) + "</ul>")
    if fleet.missing:
        parts.append("<p class='err'>Named no trace: " + "; ".join(f"<code>{e(a)}</code>: {e(b)}"
                                                                   for a, b in fleet.missing) + "</p>")
    if rep.errors:
        parts.append("<p class='err'>Not written: " + "; ".join(f"{e(k)}: {e(v)}" for k, v in rep.errors.items())
                     + "</p>")
    parts.append("<h2 id='plots'>Across hosts</h2>")
    for title, (path, caption) in images.items():
        parts.append(f"<h3>{e(title)}</h3><p class='note'>{e(caption)} (<a href='{e(path.name)}'>{e(path.name)}</a>)</p>")
        parts.append(_img(path))
    parts.append("<h2 id='traces'>Traces</h2><p class='note'>All rows are in <a href='summary.csv'>summary.csv</a>.</p>")
    shown = s.drop(columns=["warnings"]).copy()
    shown["analysis_s"] = shown["analysis_s"].round(3)
    parts.append(_table(shown, rows=200))
    tables = [t for t in TABLES if f"parquet/{t}" in rep.files]
    if tables:
        parts.append("<h2 id='files'>Tables</h2><p class='note'>One Parquet dataset per table, partitioned by host "
                     "(<code>parquet/TABLE/host=HOST/part-N.parquet</code>; columns as <code>mmtrace report "
                     "--format parquet</code>, plus <code>trace</code>, <code>boot_id</code>, <code>kernel</code>; "
                     "<code>host</code> from the directory name).</p><ul>"
                     + "".join(f"<li><a href='parquet/{t}/'>parquet/{t}/</a></li>" for t in tables) + "</ul>")
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    rep.files["index"] = path
