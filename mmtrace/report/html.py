"""``index.html``: one self-contained page (images embedded, no network) tying a report together."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from .export import csv_frame
from .frames import report_data
from .text import anomaly_table, kind_table, lost_table, merge_table, process_table, split_table

__all__ = ["write_index"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em auto;max-width:1300px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}
.wrap{overflow-x:auto}.note{color:#555;font-size:13px}.meta td{text-align:left}
.err{color:#a00000}.synthetic{background:#fff3cd;border:1px solid #e0c36c;padding:.5em 1em}
img{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:0 3px}
nav a{margin-right:1em}
"""


def _table(df: pd.DataFrame, *, index: bool = False, rows: int | None = None) -> str:
    if df is None or len(df) == 0:
        return '<p class="note">none</p>'
    shown = df if rows is None else df.head(rows)
    more = len(df) - len(shown)
    body = shown.to_html(index=index, escape=True, border=0, na_rep="")
    return f'<div class="wrap">{body}</div>' + (f'<p class="note">… {more:,} more rows in the file</p>' if more > 0 else "")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def write_index(trace, out_dir, *, files: dict, images: dict, top: int = 20) -> Path:
    """Write ``out_dir/index.html``: metadata, lost events, processes, the plots
    (embedded), and the first ``top`` rows of each table, with links to the
    files.  ``files``: {table name: path}; ``images``: {title: (path, caption)}."""
    rd = report_data(trace)
    t = rd.trace
    m = t.metadata
    out = Path(out_dir)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mmtrace report: {e(str(t.path))}</title>"
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h1>mmtrace report: <code>{e(str(t.path))}</code></h1>")
    if m.get("synthetic"):
        parts.append(f'<p class="synthetic"><b>SYNTHETIC trace.</b> {e(str(m["synthetic"]))}</p>')
    from .summary import damage_lines

    if damage_lines(t):  # damage and incompleteness first: they qualify everything below
        parts.append("<pre class='synthetic err'>" + e("\n".join(damage_lines(t, limit=50))) + "</pre>")
    dur = (rd.t1 - rd.t0) / 1e9 if rd.t1 and rd.t0 else 0.0
    meta = [("kernel", m.get("kernel_release")), ("host", m.get("host")), ("command", " ".join(m.get("command_line") or [])),
            ("recorded", f"{dur:.3f} s ({'complete' if t.complete else 'INCOMPLETE'}; stop: {m.get('stop_reason')})"),
            ("mmtrace", m.get("mmtrace_version")), ("clock", m.get("clock"))]
    parts.append("<table class='meta'>" + "".join(f"<tr><th class='l'>{e(k)}</th><td>{e(str(v))}</td></tr>"
                                                  for k, v in meta if v is not None) + "</table>")
    parts.append("<nav>" + "".join(f"<a href='#{a}'>{a}</a>" for a in
                                   ("processes", "plots", "changes", "splits", "merges", "anomalies", "hugetlb", "files"))
                 + "</nav>")
    if rd.errors:
        parts.append("<p class='err'>Some tables could not be computed: " +
                     "; ".join(f"{e(k)}: {e(v)}" for k, v in rd.errors.items()) + "</p>")
    lt = lost_table(rd)
    n_lost = int(lt["lost"].sum()) if len(lt) else 0
    parts.append(f"<h2 id='lost'>Events kept and lost</h2><p>{n_lost:,} events lost"
                 + (" counted before the recording was cut short: the rest is unknown." if not t.lost_known else
                    " (the kernel handed over every event)." if not n_lost else
                    ": the ring buffer overflowed; rebuilt trees may be wrong after the first loss.") + "</p>")
    parts.append(_table(lt.T, index=True))
    parts.append("<h2 id='processes'>Processes</h2><p class='note'>VMAs counted as /proc/PID/maps would list them; "
                 "times in ms since recording start"
                 + ("; the command started by <code>record -c</code> is counted from its exec (before it, the "
                    "process was mmtrace's own launcher)" if rd.launcher_until() else "") + ".</p>")
    parts.append(_table(process_table(rd, limit=top * 5)))
    parts.append("<h2 id='plots'>Plots</h2>")
    for title, (path, caption) in images.items():
        parts.append(f"<h3>{e(title)}</h3><p class='note'>{e(caption)} (<a href='{e(path.name)}'>{e(path.name)}</a>)</p>")
        parts.append(_img(path))
    sections = [
        ("changes", "Changes by kind", kind_table(rd), True),
        ("splits", "Splits by cause", split_table(rd), True),
        ("merges", "Merges by kind and cause", merge_table(rd), True),
        ("anomalies", "Anomalies by kind", anomaly_table(rd), True),
    ]
    for anchor, title, summary, idx in sections:
        parts.append(f"<h2 id='{anchor}'>{e(title)}</h2>")
        parts.append(_table(summary, index=idx))
        df = rd.safe(anchor)
        if df is not None and len(df):
            shown = df.drop(columns=[c for c in ("before_vmas", "after_vmas", "writes") if c in df.columns])
            if anchor == "anomalies":
                parts.append(_anomaly_list(rd, df))
            else:
                parts.append(f"<p class='note'>first {min(top, len(df))} of {len(df):,} rows of "
                             f"<a href='{e(files[anchor].name)}'>{e(files[anchor].name)}</a></p>")
                parts.append(_table(csv_frame(shown.head(top))))
    h = rd.safe("hugetlb")
    parts.append("<h2 id='hugetlb'>hugetlb accounting</h2>")
    if h is not None and len(h):
        parts.append(f"<p class='note'>first {min(top, len(h))} of {len(h):,} kernel samples of "
                     f"<a href='{e(files['hugetlb'].name)}'>{e(files['hugetlb'].name)}</a></p>")
        parts.append(_table(csv_frame(h.head(top))))
    else:
        parts.append("<p class='note'>no hugetlb activity in this trace</p>")
    parts.append("<h2 id='files'>Files</h2><ul>" + "".join(
        f"<li><a href='{e(p.name)}'>{e(p.name)}</a> ({e(n)})</li>" for n, p in files.items()) + "</ul>")
    parts.append("<p class='note'>Column meanings: see the README section “Reports and CSV columns”. "
                 "Addresses are hex in CSV, integers in Parquet.</p></body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _anomaly_list(rd, a: pd.DataFrame, limit: int = 200) -> str:
    e = html.escape
    items = []
    for r in a.head(limit).itertuples(index=False):
        ms = (int(r.ts) - rd.t0) / 1e6
        items.append(f"<li><b class='err'>{e(str(r.severity))}</b> <code>{e(str(r.kind))}</code> at {ms:.3f} ms, "
                     f"pid {int(r.pid)} {e(str(r.comm))}: {e(str(r.explanation))}</li>")
    more = f"<p class='note'>… {len(a) - limit:,} more in anomalies.csv</p>" if len(a) > limit else ""
    return "<ul>" + "".join(items) + "</ul>" + more
