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
The workers that hold a table make its Parquet files; the client writes
them, so workers need no access to ``OUT``.
"""

from __future__ import annotations

import base64
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


def _to_arrow(df: pd.DataFrame):
    """One trace's frame of a table as Arrow (``host`` left to the directory name),
    with the fields whose values tell their type: (table, {field: has values})."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..report.export import arrow_table

    t = arrow_table(df.drop(columns=["host"]))
    known = {}
    for f, col in zip(t.schema, t.columns):
        if pa.types.is_list(f.type):  # empty lists everywhere say nothing of their items' type
            known[f.name] = bool(len(col)) and (pc.sum(pc.list_value_length(col)).as_py() or 0) > 0
        else:
            known[f.name] = col.null_count < len(col)
    return t, known


def _schema_of(part) -> tuple:
    t, known = part
    return t.schema, known, t.num_rows


def _parquet_bytes(part, schema) -> bytes | None:
    """One trace's Arrow table, cast to the table's schema, as a Parquet file's
    bytes (None when empty).  Made on the worker, written by the client: the
    workers need no access to the output directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = part[0]
    if not t.num_rows:
        return None
    sink = pa.BufferOutputStream()
    pq.write_table(t.cast(schema), sink)
    return sink.getvalue().to_pybytes()


def _table_schema(infos: list[tuple]):
    """The Arrow schema every part of a table is written with: per field, the
    type of the parts whose values show it (an empty list column converts as
    list<int64> whatever its items); ValueError when those differ."""
    import pyarrow as pa

    first = infos[0][0]
    fields = []
    for i, f in enumerate(first):
        seen = [s.field(i).type for s, known, n in infos if n and known.get(f.name)]
        types = list(dict.fromkeys(seen)) or [f.type]
        if len(types) > 1:
            try:
                t = pa.unify_schemas([pa.schema([pa.field(f.name, x)]) for x in types],
                                     promote_options="permissive").field(0).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError) as e:
                raise ValueError(f"column {f.name} has types {', '.join(map(str, types))} in different traces "
                                 f"({e})") from None
        else:
            t = types[0]
        fields.append(pa.field(f.name, t))
    return pa.schema(fields)


def _write_tables(fleet, out: Path, rep: FleetReport, progress=None) -> None:
    """One dataset per table, every part with the same Arrow schema."""
    import pyarrow.parquet as pq
    from distributed import as_completed

    root = out / "parquet"
    shutil.rmtree(root, ignore_errors=True)  # a dataset is what this run wrote, nothing older
    names = list(fleet.tables)
    s = fleet.summary()
    # Files are numbered by the trace's place in the fleet (failed ones included).
    analysed = [(i, h) for i, (st, h) in enumerate(zip(s["status"], s["host"])) if st != "failed"]
    client = fleet.client
    for k, name in enumerate(names):
        try:
            parts = client.compute([_delayed(_to_arrow)(p) for p in fleet.table(name).to_delayed()])
            infos = client.gather(client.map(_schema_of, parts, pure=False))
            schema = _table_schema(infos)
            futs = [client.submit(_parquet_bytes, p, schema, pure=False) for p in parts]
            place = {f.key: ih for f, ih in zip(futs, analysed)}
            written = 0
            for f, data in as_completed(futs, with_results=True):
                if data is None:
                    continue
                i, h = place[f.key]
                d = root / name / f"host={quote(h, safe='')}"
                d.mkdir(parents=True, exist_ok=True)
                (d / f"part-{i:06d}.parquet").write_bytes(data)
                written += 1
            if not written:
                # No rows in any trace: an empty file keeps the table's columns.
                (root / name).mkdir(parents=True, exist_ok=True)
                pq.write_table(schema.empty_table(), root / name / "part-empty.parquet")
            rep.files[f"parquet/{name}"] = root / name
        except Exception as e:  # noqa: BLE001 - one table must not lose the others
            rep.errors[f"parquet/{name}"] = f"{type(e).__name__}: {e}"
        if progress is not None:
            progress.update((k + 1) / len(names))


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


def _table(df: pd.DataFrame, *, rows: int | None = None) -> str:
    """A static HTML table of the first ``rows`` rows (the page is a plain one: no scripts)."""
    if df is None or len(df) == 0:
        return '<p class="note">none</p>'
    shown = df if rows is None else df.head(rows)
    more = len(df) - len(shown)
    body = shown.to_html(index=False, escape=True, border=0, na_rep="")
    return f'<div class="wrap">{body}</div>' + (f'<p class="note">… {more:,} more rows in the file</p>' if more > 0 else "")


def _img(path: Path) -> str:
    """The PNG at ``path`` embedded in the page (self-contained: no file beside it needed)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _write_index(out: Path, fleet, rep: FleetReport, images: dict) -> None:
    from ..report.html import _CSS

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
