"""``index.html``: one self-contained interactive page (Bokeh, its JavaScript inline).

Why Bokeh: its DataTable, Select and Spinner widgets and ``CustomJS``
callbacks share ``ColumnDataSource`` objects with the figures, so that a
table filtered by process, kind and cause, paged, and linked to the
address-space timeline (a click on a change shows its process at that
instant) is a few small callbacks, not a front end of our own; and
``resources=INLINE`` writes BokehJS into the page (~2 MB), which then works
from ``file://`` with no network.  (Plotly's JavaScript alone is ~4.5 MB and
it has no paged, filterable table.)

What no screen can show is decimated before it reaches the page
(:mod:`mmtrace.report.views`): VMA lifetimes of one range less than a pixel
apart become one bar, counts keep min/max per pixel, tables keep at most
``rows`` rows spread over every process/kind/cause; the page says so where
it happens, and the exact rows stay in the CSV/Parquet files beside it.

Time is seconds since the recording started everywhere; hovers and the
row details show the raw CLOCK_MONOTONIC ns.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from . import views
from .frames import report_data
from .text import lost_table

__all__ = ["write_index", "PAGE_ROWS"]

#: Rows of each table in the page (the files keep them all).
PAGE_ROWS = {"changes": 8_000, "splits_merges": 4_000, "anomalies": 5_000, "hugetlb": 5_000}
_PAGE_SIZE = 25
_LIST_SHOWN = 40  # VMAs of a before/after list shown in a row's details

_CSS = """
:host{font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin:1em 0 .3em}
table.meta{border-collapse:collapse;font-size:12px}table.meta td,table.meta th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
.ok{background:#e8f5e9;border:1px solid #7cb342;padding:.4em .8em;margin:.4em 0}
.bad{background:#fdecea;border:1px solid #d93025;padding:.4em .8em;margin:.4em 0}
.bad li,.ok li{margin:.1em 0}.note{color:#555;font-size:12px}
code,pre{background:#f5f5f5;padding:0 3px;font-size:12px}pre{white-space:pre-wrap;margin:.2em 0;padding:4px}
"""


def _columns(df: pd.DataFrame) -> dict:
    """A frame as ColumnDataSource data (numbers as numpy arrays: sent as binary)."""
    return {c: (df[c].to_numpy() if df[c].dtype.kind in "fiub" else df[c].astype(str).tolist()) for c in df.columns}


def _e(x) -> str:
    return html.escape(str(x))


# -- the state at the top -------------------------------------------------------------------------------
def _state(rd, notes) -> tuple[bool, list[str]]:
    """(all fine, lines): completeness, lost events, damage, analyses skipped."""
    t = rd.trace
    m = t.metadata
    from .summary import damage_lines, lost_text

    bad = []
    dl = damage_lines(t, limit=50)  # damage and incompleteness first: they qualify everything below
    if dl:
        bad.append("<b>Damaged or incomplete trace</b><pre>" + _e("\n".join(dl)) + "</pre>")
    lost = {k: int(v) for k, v in (t.lost or {}).items() if int(v)}
    if not t.lost_known:
        bad.append(f"<b>Lost events: {_e(lost_text(t))}</b>")
    elif lost:
        bad.append(f"<b>{sum(lost.values()):,} events lost</b> (ring buffer full: "
                   + ", ".join(f"{_e(k)} {v:,}" for k, v in lost.items())
                   + "): rebuilt trees may be wrong after the first loss.")
    procs = rd.safe("processes")
    if procs is not None and "modelled" in procs:
        for r in procs[~procs["modelled"].astype(bool)].itertuples(index=False):
            bad.append(f"<b>NOT MODELLED</b>: pid {r.pid} {_e(r.comm)}: {_e(r.not_modelled_reason)}")
    for n in notes or ():
        bad.append(f"<b>While reading</b>: {_e(n)}")
    for k, v in rd.errors.items():
        bad.append(f"<b>Analysis skipped</b>: {_e(k)} could not be computed ({_e(v)}); its table is empty.")
    if m.get("synthetic"):
        bad.append(f"<b>SYNTHETIC trace.</b> {_e(m['synthetic'])}")
    # Analyses this trace cannot feed (no such events or tracepoint): said, not shown as empty.
    skipped = [f"<b>Analysis not run</b>: {_e(k)}: {_e(v)}." for k, v in rd.skipped().items()]
    if bad:
        return False, bad + skipped
    kept = sum(int(v) for v in (m.get("events") or {}).values())
    return True, [f"Complete trace, no event lost ({kept:,} events kept), "
                  + ("every analysis computed." if not skipped else "every analysis it can feed computed.")] + skipped


def _header(rd, notes) -> str:
    t = rd.trace
    m = t.metadata
    dur = (rd.t1 - rd.t0) / 1e9 if rd.t1 and rd.t0 else 0.0
    ok, lines = _state(rd, notes)
    meta = [("kernel", m.get("kernel_release")), ("host", m.get("host")),
            ("command", " ".join(m.get("command_line") or [])),
            ("recorded", f"{dur:.3f} s from CLOCK_MONOTONIC {rd.t0} ns (stop: {m.get('stop_reason')})"),
            ("mmtrace", m.get("mmtrace_version"))]
    lt = lost_table(rd)
    kinds = "".join(f"<td>{_e(k)}: {int(r.kept):,} kept, {int(r.lost):,} lost</td>" for k, r in lt.iterrows())
    return (f"<h1>mmtrace report: <code>{_e(t.path)}</code></h1>"
            f"<div class='{'ok' if ok else 'bad'}' id='state'><ul>" + "".join(f"<li>{x}</li>" for x in lines)
            + "</ul></div><table class='meta'>"
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in meta if v is not None)
            + f"</table><table class='meta'><tr><th>events</th>{kinds}</tr></table>"
            "<p class='note'>Times: seconds since the recording started (hover or click for the raw "
            "CLOCK_MONOTONIC ns). Drag to pan, wheel to zoom (the figures share their time axis), "
            "click a row of a table to show it in the timeline.</p>")


# -- figures ---------------------------------------------------------------------------------------------
# The same room around every figure, so that their shared time axes line up
# (the timeline's address ticks at the left, region names at the right).
_BORDERS = {"min_border_left": 130, "min_border_right": 330}
_NAME_CHARS = 44  # region names at the timeline's right, so that they fit in that room


def _shorten(name: str) -> str:
    """``anon, libc.so.6, ld-linux… (2.2 MiB)``: the size kept, the names cut."""
    if len(name) <= _NAME_CHARS:
        return name
    head, _, size = name.rpartition(" (")
    return head[: _NAME_CHARS - len(size) - 3] + "… (" + size


def _x_range(rd):
    from bokeh.models import Range1d

    end = rd.t1  # an incomplete trace may have no stop: its last change then
    ch = rd.safe("change_index")
    if not end and ch is not None and len(ch):
        end = int(ch["ts_end"].max())
    lo, hi = 0.0, max(1e-6, ((end or rd.t0) - views.origin(rd)) / 1e9)
    return Range1d(lo - 0.01 * (hi - lo), hi + 0.01 * (hi - lo), name="time")


def _timeline(rd, x_range, bars_budget: int):
    """(layout, parts for the callbacks): the per-process address-space timeline."""
    from bokeh.layouts import column
    from bokeh.models import (BoxAnnotation, CDSView, ColumnDataSource, CustomJS, CustomJSHover,
                              CustomJSTickFormatter, Div, FixedTicker, GroupFilter, HoverTool, LinearAxis, Range1d,
                              Select, Span)
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap

    bars, per = views.timeline_bars(rd, budget=bars_budget)
    pids = list(per)
    procs = rd.processes().set_index("pid")
    first = str(pids[0]) if pids else ""
    options = [(str(p), f"{p} {procs.loc[p, 'comm'] if p in procs.index else ''} "
                f"({int(procs.loc[p, 'changes']) if p in procs.index else 0:,} changes)") for p in pids]
    sel = Select(title="process", value=first, options=options or [("", "no process with VMAs")], width=420,
                 name="timeline-process")
    # Compact: repeated texts (changes, files) once in a store, numbers as binary arrays.
    t0 = views.origin(rd)
    n = len(bars)
    codes, texts = pd.factorize(pd.concat([bars["born"], bars["died"], bars["file"]], ignore_index=True))
    died_ns = bars["died_ns"].astype(np.int64).to_numpy()
    data = {"pid": bars["pid"].tolist(), "x0": bars["x0"].to_numpy(), "x1": bars["x1"].to_numpy(),
            "y0": bars["y0"].to_numpy(), "y1": bars["y1"].to_numpy(), "key": bars["key"].tolist(),
            "range": bars["range"].tolist(), "perms": bars["perms"].tolist(),
            "born_i": codes[:n].astype(np.int32), "died_i": codes[n:2 * n].astype(np.int32),
            "file_i": codes[2 * n:].astype(np.int32),
            "b_off": (bars["born_ns"].astype(np.int64).to_numpy() - t0).astype(np.float64),
            "d_off": np.where(died_ns < 0, np.nan, died_ns - t0).astype(np.float64)}
    store = Div(visible=False, name="timeline-store")
    src = ColumnDataSource(data, name="timeline-bars")
    pf = GroupFilter(column_name="pid", group=first)
    gaps = pd.DataFrame([(str(p), y0, y1, text) for p, a in per.items() for y0, y1, text in a["gaps"]],
                        columns=["pid", "y0", "y1", "text"])
    gsrc = ColumnDataSource(_columns(gaps))
    gf = GroupFilter(column_name="pid", group=first)
    axes = {str(p): {"ticks": a["ticks"], "labels": a["labels"], "name_y": [y for y, _ in a["names"]],
                     "names": [_shorten(n) for _, n in a["names"]], "x": list(a["x"]),
                     "note": (f"{a['lifetimes']:,} VMA lifetimes drawn as {a['lifetimes'] - a['joined'] - a['dropped']:,} "
                              f"bars" + (f" (lifetimes of one range less than a pixel apart joined; {a['dropped']:,} "
                                         "short-lived bars left out)" if a["joined"] or a["dropped"] else ""))}
            for p, a in per.items()}
    if first:  # start on the first process's lifetime, as choosing it does
        lo, hi = per[pids[0]]["x"]
        pad = max(1e-6, (hi - lo) * 0.01)
        x_range.start, x_range.end = lo - pad, hi + pad
    fig = figure(height=560, sizing_mode="stretch_width", x_range=x_range, **_BORDERS, y_range=Range1d(-0.02, 1.02),
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom", active_drag="xpan",
                 x_axis_label="seconds since recording start", name="timeline",
                 title=f"address space of {options[0][1] if options else '-'}: each VMA from its creation to its end")
    fig.toolbar.logo = None
    fig.quad(left=-1e6, right=1e6, bottom="y0", top="y1", source=gsrc, view=CDSView(filter=gf),
             fill_color="#eeeeee", line_color=None, name="gaps")
    colours = factor_cmap("key", list(views.PERM_COLOURS.values()), list(views.PERM_COLOURS))
    r = fig.quad(left="x0", right="x1", bottom="y0", top="y1", source=src, view=CDSView(filter=pf),
                 fill_color=colours, line_color=colours, fill_alpha=0.8, line_alpha=0.9, line_width=0.6,
                 legend_field="key", name="vmas")
    fig.legend.location = "top_left"
    fig.legend.title = "perms"
    fig.legend.label_text_font_size = "9pt"
    text = CustomJSHover(args={"store": store}, code="return store.tags[0].texts[value];")
    ns = CustomJSHover(args={"store": store}, code="return isNaN(value) ? 'still mapped at the end' : "
                       "(BigInt(store.tags[0].t0) + BigInt(Math.round(value))).toString() + ' ns';")
    fig.add_tools(HoverTool(renderers=[r], tooltips=[
        ("range", "@range"), ("perms", "@perms"), ("file", "@file_i{custom}"),
        ("from", "@x0{0.000000} s (@b_off{custom})"), ("until", "@x1{0.000000} s (@d_off{custom})"),
        ("created by", "@born_i{custom}"), ("ended by", "@died_i{custom}")],
        formatters={"@file_i": text, "@born_i": text, "@died_i": text, "@b_off": ns, "@d_off": ns}))
    fig.add_tools(HoverTool(renderers=[fig.renderers[0]], tooltips=[("", "@text")]))
    a0 = axes.get(first, {"ticks": [], "labels": [], "name_y": [], "names": []})
    store.tags = [{"texts": [str(x) for x in texts], "axes": axes, "t0": str(t0)}]  # once in the page, not per callback
    code_left = ("const a = store.tags[0].axes[sel.value]; if (!a) return ''; const i = a.ticks.indexOf(tick); "
                 "return i < 0 ? '' : a.labels[i];")
    code_right = ("const a = store.tags[0].axes[sel.value]; if (!a) return ''; const i = a.name_y.indexOf(tick); "
                  "return i < 0 ? '' : a.names[i];")
    fig.yaxis.ticker = FixedTicker(ticks=a0["ticks"])
    fig.yaxis.formatter = CustomJSTickFormatter(args={"store": store, "sel": sel}, code=code_left)
    fig.yaxis.major_label_text_font_size = "8pt"
    fig.yaxis.axis_label = "address (empty stretches cut out)"
    right = LinearAxis(ticker=FixedTicker(ticks=a0["name_y"]),
                       formatter=CustomJSTickFormatter(args={"store": store, "sel": sel}, code=code_right),
                       major_label_text_font_size="8pt")
    fig.add_layout(right, "right")
    fig.ygrid.visible = False
    mark = Span(location=float("nan"), dimension="height", line_color="#d00000", line_width=1.5, line_dash="dashed",
                name="mark")
    box = BoxAnnotation(bottom=float("nan"), top=float("nan"), fill_color="#d00000", fill_alpha=0.12,
                        line_color="#d00000", name="mark-range")
    fig.add_layout(mark)
    fig.add_layout(box)
    note = Div(text=f"<p class='note'>{_e(axes[first]['note']) if first else 'no VMA known'}</p>", name="timeline-note")
    sel.js_on_change("value", CustomJS(args={"pf": pf, "gf": gf, "store": store, "left": fig.yaxis[0], "right": right,
                                             "fig": fig, "x": x_range, "note": note, "sel": sel}, code="""
const a = store.tags[0].axes[sel.value]; if (!a) return;
pf.group = sel.value; gf.group = sel.value;
left.ticker.ticks = a.ticks; right.ticker.ticks = a.name_y;
const lab = sel.options.find(o => o[0] == sel.value);
fig.title.text = 'address space of ' + (lab ? lab[1] : sel.value) + ': each VMA from its creation to its end';
const pad = Math.max(1e-6, (a.x[1] - a.x[0]) * 0.01);
x.start = a.x[0] - pad; x.end = a.x[1] + pad;
note.text = "<p class='note'>" + a.note + "</p>";
"""))
    return column(sel, fig, note, store, sizing_mode="stretch_width"), {"sel": sel, "fig": fig, "mark": mark, "box": box,
                                                                 "per": per, "x": x_range, "store": store}


def _step_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of a step line that holds each y until the next x."""
    if len(x) < 2:
        return x, y
    xs = np.empty(2 * len(x) - 1)
    ys = np.empty(2 * len(x) - 1)
    xs[0::2], ys[0::2] = x, y
    xs[1::2], ys[1::2] = x[1:], y[:-1]
    return xs, ys


_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442", "#999999",
            "#882255"]


def _vma_count(rd, x_range, top: int = 10):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    pids = rd.busiest(top)
    lines = views.count_lines(rd, pids)
    n = len(rd.processes())
    fig = figure(height=300, sizing_mode="stretch_width", x_range=x_range, name="vma-count", **_BORDERS,
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom", active_drag="xpan",
                 x_axis_label="seconds since recording start", y_axis_label="VMAs",
                 title="VMAs per process over time" + (f" (the {len(pids)} busiest of {n})" if n > len(pids) else ""))
    fig.toolbar.logo = None
    rs = []
    for i, pid in enumerate(pids):
        d = lines[lines["pid"] == pid]
        if not len(d):
            continue
        xs, ys = _step_xy(d["t"].to_numpy(), d["vmas"].to_numpy(np.float64))
        _, ms = _step_xy(d["t"].to_numpy(), d["mapped"].to_numpy(np.float64))
        _, ns = _step_xy(d["t"].to_numpy(), d["ts"].to_numpy(np.float64))
        src = ColumnDataSource({"t": xs, "vmas": ys, "mapped": ms / 2**20, "ns": ns})
        rs.append(fig.line("t", "vmas", source=src, line_width=1.8, color=_PALETTE[i % len(_PALETTE)],
                           legend_label=f"{pid} {rd.comm_of(pid)}"))
    fig.add_tools(HoverTool(renderers=rs, tooltips=[("t", "@t{0.000000} s (@ns{0} ns)"), ("VMAs", "@vmas{0}"),
                                                   ("mapped", "@mapped{0.0} MiB")], mode="mouse"))
    if rs:
        fig.legend.click_policy = "hide"
        fig.legend.location = "top_left"
        fig.legend.label_text_font_size = "9pt"
    return fig


def _splits_merges(rd, x_range):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    b = views.split_merge_bins(rd)
    b["neg_m"] = -b["merges"]
    b["neg_mn"] = -(b["merges"] + b["new_range"])
    fig = figure(height=260, sizing_mode="stretch_width", x_range=x_range, name="splits-merges", **_BORDERS,
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom", active_drag="xpan",
                 x_axis_label="seconds since recording start", y_axis_label="points per bin",
                 title=f"splits (up) and merges (down) per {(b['x1'] - b['x0']).iloc[0] * 1e3:.3g} ms, all processes "
                       f"(split points {int(b['splits'].sum()):,}, merge points {int(b['merges'].sum()):,}, "
                       f"new-range merges {int(b['new_range'].sum()):,})")
    fig.toolbar.logo = None
    src = ColumnDataSource(_columns(b))
    r1 = fig.quad(left="x0", right="x1", bottom=0, top="splits", source=src, color="#0072B2", legend_label="split points")
    r2 = fig.quad(left="x0", right="x1", bottom="neg_m", top=0, source=src, color="#D55E00", legend_label="merge points")
    r3 = fig.quad(left="x0", right="x1", bottom="neg_mn", top="neg_m", source=src, color="#E69F00",
                  legend_label="new-range merges")
    fig.add_tools(HoverTool(renderers=[r1, r2, r3], tooltips=[
        ("bin", "@x0{0.000000} .. @x1{0.000000} s"), ("splits", "@splits"), ("merges", "@merges"),
        ("new-range merges", "@new_range")]))
    fig.legend.location = "top_left"
    fig.legend.label_text_font_size = "9pt"
    return fig


def _hugetlb(rd, x_range):
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    h = rd.safe("hugetlb")
    if h is None or not len(h):
        return None
    fig = figure(height=300, sizing_mode="stretch_width", x_range=x_range, name="hugetlb", **_BORDERS,
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", active_scroll="xwheel_zoom", active_drag="xpan",
                 x_axis_label="seconds since recording start", y_axis_label="huge pages",
                 title="hugetlb reservations: the kernel's resv_huge_pages against the model's")
    fig.toolbar.logo = None
    t = views.seconds(rd, h["ts"])
    for col, colour, dash, label in (("kernel_resv", "#000000", "solid", "resv_huge_pages (kernel)"),
                                     ("model_resv", "#56B4E9", "dashed", "model_resv (rebuilt from the trace)"),
                                     ("free_huge_pages", "#009E73", "dotted", "free_huge_pages (kernel)")):
        xs, ys = _step_xy(t, h[col].to_numpy(np.float64))
        fig.line(xs, ys, color=colour, line_dash=dash, line_width=2, legend_label=label)
    src = ColumnDataSource({"t": t, "k": h["kernel_resv"].to_numpy(np.int64), "m": h["model_resv"].to_numpy(np.int64),
                            "ns": h["ts"].astype(str).tolist(), "call": h["call"].astype(str).tolist(),
                            "pid": h["pid"].astype(str).tolist()})
    pts = fig.scatter("t", "k", source=src, size=6, color="#000000")
    fig.add_tools(HoverTool(renderers=[pts], tooltips=[("t", "@t{0.000000} s (@ns ns)"), ("pid", "@pid"),
                                                      ("call", "@call"), ("kernel", "@k"), ("model", "@m")]))
    a = rd.safe("anomalies")
    if a is not None and len(a):
        at = views.seconds(rd, a["ts"])
        asrc = ColumnDataSource({"t": at, "kind": a["kind"].astype(str).tolist(),
                                 "text": a["explanation"].astype(str).tolist()})
        seg = fig.segment(x0="t", x1="t", y0=min(0, int(h["kernel_resv"].min())) - 1,
                          y1=int(max(h["kernel_resv"].max(), h["model_resv"].max(), h["free_huge_pages"].max())) + 1,
                          source=asrc, color="#d00000", line_width=2, legend_label=f"anomalies ({len(a)})")
        fig.add_tools(HoverTool(renderers=[seg], tooltips=[("anomaly", "@kind"), ("", "@text")]))
    fig.legend.location = "top_left"
    fig.legend.label_text_font_size = "9pt"
    return fig


# -- tables ----------------------------------------------------------------------------------------------
def _compact_vmas(vs) -> str:
    """A before/after list as the page carries it: ``START-END perms|...`` (hex,
    no 0x), at most :data:`_LIST_SHOWN`, then ``+N more``; the page's
    JavaScript writes it out with sizes."""
    vs = list(vs) if isinstance(vs, (list, tuple, np.ndarray)) else []
    out = []
    for v in vs[:_LIST_SHOWN]:
        if isinstance(v, dict):
            out.append(f"{int(v['start']):x}-{int(v['end']):x} {v.get('perms', '')}")
        else:
            out.append(f"{int(v[0]):x}-{int(v[1]):x} {v[2] if len(v) > 2 else ''}")
    if len(vs) > _LIST_SHOWN:
        out.append(f"+{len(vs) - _LIST_SHOWN:,} more in the CSV")
    return "|".join(out)


# A row's details, written by the page from compact columns (raw ns as BigInt:
# CLOCK_MONOTONIC passes 2**53 ns after 104 days of uptime).
_DETAIL_JS = """
const d = src.data;
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const size = n => { for (const [u, sh] of [['TiB', 40], ['GiB', 30], ['MiB', 20], ['KiB', 10]]) { const v = n / 2 ** sh;
  if (v >= 1) return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + ' ' + u; } return n + ' B'; };
const vmas = s => !s ? '(none)' : s.split('|').map(v => { if (v[0] == '+') return '… ' + v.slice(1);
  const [r, p] = v.split(' '); const [a, b] = r.split('-');
  return '0x' + a + '-0x' + b + ' ' + p + ' (' + size(Number(BigInt('0x' + b) - BigInt('0x' + a))) + ')'; }).join('\\n');
const ns = BigInt(t0) + BigInt(Math.round(d._ns[i]));
const parts = [];
if (d.call && d.call[i]) parts.push('<code>' + esc(d.call[i]) + '</code>');
let at = 'at ' + d._t[i].toFixed(9) + ' s = CLOCK_MONOTONIC ' + ns.toLocaleString('en-US') + ' ns';
if (d._dns) at += ', ends at ' + (ns + BigInt(Math.round(d._dns[i]))).toLocaleString('en-US') + ' ns (+' + (d._dns[i] / 1e3).toFixed(1) + ' µs)';
parts.push(at);
if (d.pid) parts.push('pid ' + d.pid[i] + (d._tid ? ' tid ' + d._tid[i] : '') + (d.comm ? ' ' + esc(d.comm[i]) : ''));
if (d.lo) parts.push('range ' + d.lo[i] + '-' + d.hi[i] + ' (' + size(Number(BigInt(d.hi[i]) - BigInt(d.lo[i]))) + ')');
if (d._x && d._x[i]) parts.push(esc(d._x[i]));
let h = parts.join('<br>');
if (d._b) {
  h += '<br><b>before</b><pre>' + esc(vmas(d._b[i])) + '</pre><b>after</b><pre>' + esc(vmas(d._a[i])) + '</pre>'; }
detail.text = h;
"""


def _table_block(name: str, title: str, df: pd.DataFrame, columns: list, cap: int, rd, filters=("pid", "kind", "cause"),
                 timeline=None, file_name: str | None = None, derive=None, full: pd.DataFrame | None = None):
    """A paged, filterable DataTable of ``df`` (at most ``cap`` rows, see
    :func:`views.sample_rows`) with a details box; a click on a row marks it
    in the timeline (``timeline``: the parts from :func:`_timeline`).
    ``derive``: adds columns to the rows kept (cheaper than to all).
    ``full``: the whole table's filter columns when ``df`` is already a
    sample of it (the streamed report keeps no more): totals and the filters'
    counts are the whole table's."""
    from bokeh.layouts import column, row
    from bokeh.models import (CDSView, ColumnDataSource, CustomJS, DataTable, Div, IndexFilter, NumberFormatter,
                              Select, Spinner, StringFormatter, TableColumn)

    t0 = views.origin(rd)
    whole = df if full is None else full
    total = len(whole)
    rows = views.sample_rows(df, cap, by=filters) if len(df) else np.zeros(0, dtype=np.int64)
    sub = df.iloc[rows]
    if derive is not None:
        sub = derive(sub)
    data: dict = {}
    tcols = []
    for col, label, width, kind in columns:
        if col not in sub.columns and kind != "t":
            continue
        if kind == "t":
            data["_t"] = views.seconds(rd, sub["ts"]) if len(sub) else np.zeros(0)
            tcols.append(TableColumn(field="_t", title=label, width=width, formatter=NumberFormatter(format="0.000000")))
        elif kind == "hex":
            data[col] = [f"{int(v):#x}" for v in sub[col]]
            tcols.append(TableColumn(field=col, title=label, width=width, formatter=StringFormatter(font_style="normal")))
        elif kind == "vmas":
            data[col] = [f"{len(b)} → {len(a)}" for b, a in zip(sub["before"], sub["after"])]
            tcols.append(TableColumn(field=col, title=label, width=width))
        elif kind == "num":
            data[col] = sub[col].to_numpy(np.float64)
            tcols.append(TableColumn(field=col, title=label, width=width, formatter=NumberFormatter(format="0,0")))
        else:
            data[col] = sub[col].astype(str).tolist()
            tcols.append(TableColumn(field=col, title=label, width=width))
    for f in filters:  # filter columns: the shown one when it is the same text
        if f in sub.columns and f not in data:
            data[f] = sub[f].astype(str).tolist()
    data["_pid"] = data["pid"] if "pid" in data else [""] * len(sub)
    data["_t"] = views.seconds(rd, sub["ts"]) if len(sub) else np.zeros(0)
    data["_ns"] = (sub["ts"].to_numpy(np.int64) - t0).astype(np.float64)
    if "ts_end" in sub.columns:
        data["_dns"] = (sub["ts_end"].to_numpy(np.int64) - sub["ts"].to_numpy(np.int64)).astype(np.float64)
    data["_dur"] = data["_dns"] / 1e9 if "_dns" in data else np.zeros(len(sub))
    if "tid" in sub.columns:
        data["_tid"] = sub["tid"].to_numpy(np.float64)
    if "before" in sub.columns:
        data["_b"] = [_compact_vmas(v) for v in sub["before"]]
        data["_a"] = [_compact_vmas(v) for v in sub["after"]]
    if "explanation" in sub.columns:
        data["_x"] = sub["explanation"].astype(str).tolist()
    elif "at" in sub.columns:
        data["_x"] = [f"{k} points at " + ", ".join(f"{int(a):#x}" for a in list(at)[:_LIST_SHOWN])
                      for k, at in zip(sub["kind"].astype(str), sub["at"])]
    # Where the change sits in its process's timeline (NaN: not drawn).
    y0, y1 = np.full(len(sub), np.nan), np.full(len(sub), np.nan)
    per = timeline["per"] if timeline else {}
    if "lo" in sub.columns and per:
        for pid, idx in pd.Series(np.arange(len(sub))).groupby(sub["pid"].to_numpy()).groups.items():
            lay = per.get(int(pid), {}).get("layout")
            if lay is None or not lay.regions:
                continue
            ii = np.asarray(list(idx))
            y0[ii] = lay.y(sub["lo"].to_numpy(np.uint64)[ii])
            y1[ii] = lay.y(sub["hi"].to_numpy(np.uint64)[ii])
    data["_y0"], data["_y1"] = y0, y1
    src = ColumnDataSource(data, name=f"{name}-rows")
    flt = IndexFilter(indices=list(range(min(_PAGE_SIZE, len(sub)))))
    table = DataTable(source=src, view=CDSView(filter=flt), columns=tcols, height=_PAGE_SIZE * 25 + 32,
                      sizing_mode="stretch_width", index_position=None, selectable=True, name=f"{name}-table",
                      reorderable=False, sortable=False)
    widgets = []
    for f in filters:
        if f not in whole.columns:
            continue
        counts = whole[f].value_counts(sort=True)  # on the column as it is: cheaper than on its text
        counts.index = counts.index.astype(str)
        opts = [("", f"all ({total:,})")] + [(k, f"{k} ({v:,})") for k, v in counts.items()]
        if f == "pid":
            opts = [("", f"all ({total:,})")] + [(k, f"{k} {rd.comm_of(int(k))} ({v:,})") for k, v in counts.items()]
        widgets.append((f, Select(title={"pid": "process"}.get(f, f), value="", options=opts, width=240,
                                  name=f"{name}-filter-{f}")))
    page = Spinner(title="page", low=1, high=max(1, -(-len(sub) // _PAGE_SIZE)), step=1, value=1, width=90,
                   name=f"{name}-page")
    shown_note = "" if len(sub) == total else (
        f" The page holds {len(sub):,} of the {total:,} rows, spread over every "
        + "/".join({"pid": "process"}.get(f, f) for f in filters if f in whole.columns)
        + f"; all are in {file_name or 'the CSV'}.")
    info = Div(text="", name=f"{name}-info")
    detail = Div(text="<p class='note'>Click a row for its details" + (" and its place in the timeline" if timeline else "")
                 + ".</p>", name=f"{name}-detail", sizing_mode="stretch_width")
    update = CustomJS(args={"src": src, "flt": flt, "page": page, "info": info, "sels": [w for _, w in widgets],
                            "cols": [f for f, _ in widgets], "size": _PAGE_SIZE, "total": total,
                            "note": shown_note}, code="""
const n = src.get_length(); const match = [];
const want = sels.map(s => s.value);
const cs = cols.map(c => src.data[c]);
for (let i = 0; i < n; i++) {
  let ok = true;
  for (let j = 0; j < cs.length; j++) { if (want[j] !== '' && cs[j][i] !== want[j]) { ok = false; break; } }
  if (ok) match.push(i);
}
const pages = Math.max(1, Math.ceil(match.length / size));
if (cb_obj !== page && page.value !== 1) { page.value = 1; return; }  // a new filter starts on page 1 (re-enters)
page.high = pages;
const p = Math.min(Math.max(1, page.value || 1), pages);
const idx = match.slice((p - 1) * size, p * size);
flt.indices = idx;
src.selected.indices = [];
info.text = "<p class='note'>" + (match.length ? ("rows " + ((p - 1) * size + 1).toLocaleString() + "–" +
  ((p - 1) * size + idx.length).toLocaleString() + " of " + match.length.toLocaleString() + " matching") :
  "no row matches") + " (page " + p + " of " + pages + ")." + note + "</p>";
""")
    for _, w in widgets:
        w.js_on_change("value", update)
    page.js_on_change("value", update)
    args = {"src": src, "detail": detail, "t0": str(t0)}
    code = "const i = src.selected.indices[0]; if (i === undefined) return;\n" + _DETAIL_JS
    if timeline:
        args.update(sel=timeline["sel"], mark=timeline["mark"], box=timeline["box"], x=timeline["x"],
                    fig=timeline["fig"], store=timeline["store"])
        code += """
const pid = src.data['_pid'][i], t = src.data['_t'][i], dur = src.data['_dur'][i];
if (sel.options.some(o => o[0] == pid)) {
  if (sel.value != pid) sel.value = pid;
  // a window a few hundred changes wide in a busy process, the change itself in a quiet one
  const a = store.tags[0].axes[pid];
  const w = Math.max((a.x[1] - a.x[0]) / 2000, dur * 50, 2e-5);
  x.start = t - w; x.end = t + w;
  mark.location = t;
  const y0 = src.data['_y0'][i], y1 = src.data['_y1'][i];
  box.bottom = y0; box.top = (y1 > y0) ? y1 : y0 + 0.004;
  const v = Bokeh.index.find_one(fig); if (v && v.el && v.el.scrollIntoView) v.el.scrollIntoView({block: 'center'});
}
"""
    src.selected.js_on_change("indices", CustomJS(args=args, code=code))
    # The first page's note, as the callback would write it.
    info.text = (f"<p class='note'>rows 1–{min(_PAGE_SIZE, len(sub)):,} of {len(sub):,} matching "
                 f"(page 1 of {max(1, -(-len(sub) // _PAGE_SIZE))}).{shown_note}</p>") if len(sub) else \
        "<p class='note'>none</p>"
    head = Div(text=f"<h2 id='{name}'>{_e(title)}</h2>", sizing_mode="stretch_width")
    return column(head, row(*[w for _, w in widgets], page), info, table, detail, sizing_mode="stretch_width")


_CHANGE_COLS = [("ts", "t (s)", 80, "t"), ("pid", "pid", 50, "str"), ("comm", "comm", 100, "str"),
                ("kind", "kind", 70, "str"), ("cause", "cause", 70, "str"), ("call", "call", 380, "str"),
                ("lo", "from", 110, "hex"), ("hi", "to", 110, "hex"), ("vmas", "VMAs before → after", 90, "vmas")]
_SM_COLS = [("ts", "t (s)", 90, "t"), ("pid", "pid", 60, "str"), ("comm", "comm", 110, "str"),
            ("kind", "kind", 110, "str"), ("cause", "cause", 80, "str"), ("count", "points", 60, "num"),
            ("call", "call", 420, "str"), ("vmas", "VMAs before → after", 110, "vmas")]
_ANOMALY_COLS = [("ts", "t (s)", 90, "t"), ("pid", "pid", 60, "str"), ("comm", "comm", 110, "str"),
                 ("severity", "severity", 70, "str"), ("kind", "kind", 170, "str"),
                 ("explanation", "explanation", 600, "str")]


def _process_table(rd, timeline):
    from bokeh.models import ColumnDataSource, CustomJS, DataTable, NumberFormatter, TableColumn

    p = rd.processes()
    order = rd.busiest(len(p))
    p = p.set_index("pid").loc[order].reset_index() if order else p
    sec = lambda c: [(int(v) - views.origin(rd)) / 1e9 if v is not pd.NA else float("nan") for v in p[c]]  # noqa: E731
    data = {"pid": p["pid"].astype(str).tolist(), "ppid": p["ppid"].astype(str).tolist(),
            "comm": p["comm"].astype(str).tolist(), "start": sec("start_ts"), "exit": sec("exit_ts")}
    cols = [TableColumn(field="pid", title="pid", width=70), TableColumn(field="ppid", title="ppid", width=70),
            TableColumn(field="comm", title="comm", width=140),
            TableColumn(field="start", title="start (s)", formatter=NumberFormatter(format="0.000000", nan_format="")),
            TableColumn(field="exit", title="exit (s)", formatter=NumberFormatter(format="0.000000", nan_format=""))]
    for c, label in (("changes", "changes"), ("vmas_start", "VMAs start"), ("vmas_end", "VMAs end"),
                     ("vmas_peak", "VMAs peak"), ("splits", "splits"), ("merges", "merges")):
        data[c] = p[c].to_numpy(np.float64)
        cols.append(TableColumn(field=c, title=label, formatter=NumberFormatter(format="0,0")))
    src = ColumnDataSource(data, name="processes-rows")
    t = DataTable(source=src, columns=cols, height=min(10, max(1, len(p))) * 25 + 32, sizing_mode="stretch_width",
                  index_position=None, name="processes-table", reorderable=False)
    src.selected.js_on_change("indices", CustomJS(args={"src": src, "sel": timeline["sel"]}, code="""
const i = src.selected.indices[0]; if (i === undefined) return;
const pid = src.data['pid'][i]; if (sel.options.some(o => o[0] == pid)) sel.value = pid;
"""))
    return t


def write_index(trace, out_dir, *, files: dict, images: dict | None = None, notes=(), rows: dict | None = None,
                bars: int = 60_000, callsites: str = "") -> Path:
    """Write ``out_dir/index.html``: the state of the trace (complete, lost events,
    damage, analyses skipped), the processes, the address-space timeline of
    each process, VMAs and splits/merges over time, hugetlb reservations,
    and the changes, splits/merges and anomalies tables (paged, filterable),
    with links to ``files`` ({table name: path}) and ``images`` ({title:
    (path, caption)}, the PNGs of ``--format png``).  ``notes``: warnings met
    while reading the trace.  ``rows``: rows per table in the page (default
    :data:`PAGE_ROWS`); ``bars``: most bars the timeline draws; ``callsites``: the
    "who changed the address space" section of a ``record -g`` trace, as text
    (:func:`mmtrace.report.callsites.section_text`)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div, InlineStyleSheet
    from bokeh.resources import INLINE

    rd = report_data(trace)
    rows = {**PAGE_ROWS, **(rows or {})}
    out = Path(out_dir)
    css = InlineStyleSheet(css=_CSS)
    x_range = _x_range(rd)
    parts = [Div(text=_header(rd, notes), sizing_mode="stretch_width", name="header")]
    if rd.safe("processes") is not None:
        tl, tparts = _timeline(rd, x_range, bars)
        parts += [Div(text="<h2 id='processes'>Processes</h2><p class='note'>Click one to show its address space "
                      "below. VMAs counted as /proc/PID/maps would list them"
                      + ("; the command started by <code>record -c</code> is counted from its exec (before it, the "
                         "process was mmtrace's own launcher)" if rd.launcher_until() else "") + ".</p>",
                      sizing_mode="stretch_width"), _process_table(rd, tparts),
                  Div(text="<h2 id='timeline'>Address space over time</h2><p class='note'>Each VMA is a bar from "
                      "its creation to its end (x) over its address range (y); the wide empty stretches between "
                      "address regions are cut out (grey bands) so that every region is readable; colours are "
                      "permissions, hugetlb in pink. Hover a bar for its range, file and the changes that created "
                      "and ended it.</p>", sizing_mode="stretch_width"), tl]
        parts.append(_vma_count(rd, x_range))
    else:
        tparts = None
    parts.append(_splits_merges(rd, x_range))
    hf = _hugetlb(rd, x_range)
    if hf is not None:
        parts.append(hf)
    ci = rd.safe("change_index")
    if ci is not None:
        sample, _ = rd.change_sample(rows["changes"])
        parts.append(_table_block("changes", f"Changes ({len(ci):,})", sample, _CHANGE_COLS, rows["changes"], rd,
                                  timeline=tparts, file_name=_name(files, "changes"), full=ci))
    sm = [d for d in (rd.safe("split_index"), rd.safe("merge_index")) if d is not None and len(d)]
    if sm:
        light = pd.concat(sm, ignore_index=True)
        sample, _ = rd.sm_sample(rows["splits_merges"])

        def full_rows(sub):
            # the range the VMAs before spanned
            return sub.assign(lo=[min((int(v["start"]) for v in b), default=0) for b in sub["before"]],
                              hi=[max((int(v["end"]) for v in b), default=0) for b in sub["before"]])
        parts.append(_table_block("splits_merges", f"Splits and merges ({len(light):,} changes)", sample, _SM_COLS,
                                  rows["splits_merges"], rd, timeline=tparts, derive=full_rows, full=light,
                                  file_name=" and ".join(n for n in (_name(files, "splits"), _name(files, "merges")) if n)))
    a = rd.safe("anomalies")
    if a is not None and len(a):
        parts.append(_table_block("anomalies", f"Anomalies ({len(a):,})", a, _ANOMALY_COLS, rows["anomalies"], rd,
                                  filters=("pid", "kind", "severity"), timeline=tparts,
                                  file_name=_name(files, "anomalies")))
    if callsites:
        head, _, body = callsites.partition("\n")
        parts.append(Div(text=f"<h2 id='callsites'>{_e(head)}</h2><p class='note'>The innermost frame outside "
                         "libc/ld.so of each change's stack (<code>record -g</code>); every call site and stack: "
                         f"{_e(_name(files, 'callsites'))}, {_e(_name(files, 'callsite_holders'))}.</p>"
                         f"<pre>{_e(body)}</pre>", sizing_mode="stretch_width"))
    links = [f"<li><a href='{_e(p.name)}'>{_e(p.name)}</a> ({_e(n)})</li>" for n, p in files.items()]
    links += [f"<li><a href='{_e(p.name)}'>{_e(p.name)}</a> ({_e(title)})</li>" for title, (p, _) in (images or {}).items()]
    parts.append(Div(text="<h2 id='files'>Files</h2><ul>" + "".join(links) + "</ul><p class='note'>The exact rows "
                     "of every table are in these files (column meanings: README, “Reports and CSV columns”; "
                     "addresses are hex in CSV, integers in Parquet; times CLOCK_MONOTONIC ns).</p>",
                     sizing_mode="stretch_width"))
    for p in parts:
        p.stylesheets = [css]
    page = column(*parts, sizing_mode="stretch_width", styles={"max-width": "1400px", "margin": "0 auto"})
    path = out / "index.html"
    path.write_text(file_html(page, resources=INLINE, title=f"mmtrace report: {rd.trace.path}"), encoding="utf-8")
    return path


def _name(files: dict, table: str) -> str:
    p = files.get(table)
    return Path(p).name if p is not None else ""
