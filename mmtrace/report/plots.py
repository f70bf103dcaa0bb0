"""The report's figures (matplotlib, Agg: no display needed).

Each function takes a trace path, an opened trace or a
:class:`mmtrace.report.frames.ReportData`, draws one figure, saves it as
PNG when ``path`` is given, and returns the main :class:`matplotlib.axes.Axes`
(``ax.figure`` is the figure; close it with ``matplotlib.pyplot.close``
when done in a loop).  Time is shown since the start of the recording.

- :func:`vma_count`: VMAs of each process over time;
- :func:`address_timeline`: one process's address space, each VMA a bar
  from its creation to its end, with the empty stretches between address
  regions cut out (marked ``≈``) so every region is readable;
- :func:`splits_merges`: split and merge points per time bin;
- :func:`hugetlb`: hugetlb reservations, the model against the kernel's
  counter, anomalies marked.
"""

from __future__ import annotations

from pathlib import Path

import os
import sys

import matplotlib

# Agg unless the caller chose (a notebook's inline backend, MPLBACKEND, pyplot already in use).
if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .frames import report_data  # noqa: E402
from .views import PERM_COLOURS, address_regions, join_lifetimes, region_layout, region_names  # noqa: E402
from .views import colour_key as _colour_key  # noqa: E402
from .views import size_text as _size  # noqa: E402

__all__ = ["vma_count", "address_timeline", "splits_merges", "hugetlb", "time_axis", "address_regions",
           "XLABEL", "DPI"]

DPI = 110
XLABEL = "time since recording start ({unit})"

def time_axis(rd) -> tuple[str, float, int]:
    """(unit, ns per unit, origin ns) for a recording: µs below 2 ms, ms below 2 s, else s."""
    rd = report_data(rd)
    t0 = rd.t0
    span = (rd.t1 - rd.t0) if rd.t1 > rd.t0 else 0
    if not t0:
        ch = rd.change_index()
        t0 = int(ch["ts"].min()) if len(ch) else 0
    if span < 2e6:
        return "µs", 1e3, t0
    return ("ms", 1e6, t0) if span < 2e9 else ("s", 1e9, t0)


def _save(fig, path) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)


def _new(ax, size=(11, 5.5)):
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    return fig, ax


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#555555")


def _span(lo: float, hi: float, frac: float = 0.03) -> tuple[float, float]:
    """(lo, hi) padded by ``frac`` of the span on both sides (never empty)."""
    pad = (hi - lo) * frac or max(abs(hi) * 1e-3, 1e-3)
    return lo - pad, hi + pad


def _label(rd, pid: int) -> str:
    comm = rd.comm_of(pid)
    return f"{pid} {comm}" if comm else str(pid)


# -- VMA count -----------------------------------------------------------------------------------------
def vma_count(trace, path=None, *, ax=None, top: int = 8):
    """VMAs of each process over time (steps at each change), the ``top`` busiest processes.

    x: time since recording start; y: VMAs (as /proc/PID/maps would list).
    Returns the Axes.
    """
    rd = report_data(trace)
    fig, ax = _new(ax)
    unit, div, t0 = time_axis(rd)
    vc = rd.vma_counts_shown()
    pids = rd.busiest(top)
    end = (rd.t1 - t0) / div if rd.t1 else None
    procs = rd.processes().set_index("pid")
    for pid in pids:
        d = vc[vc["pid"] == pid].sort_values("ts", kind="stable")
        if len(d) == 0:
            continue
        x = ((d["ts"].to_numpy(np.int64) - t0) / div).tolist()
        y = d["vmas"].tolist()
        ex = procs.loc[pid, "exit_ts"] if pid in procs.index else pd.NA
        if ex is pd.NA and end is not None and x[-1] < end:
            x.append(end)
            y.append(y[-1])
        ax.step(x, y, where="post", lw=1.6, label=_label(rd, pid))
    ax.set_xlabel(XLABEL.format(unit=unit))
    ax.set_ylabel("VMAs")
    n = len(rd.processes())
    ax.set_title("VMAs per process over time" + (f" (the {len(pids)} busiest of {n} processes)" if n > len(pids) else "")
                 + (" (the command from its exec)" if rd.launcher_until() else ""))
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    if pids:
        ax.legend(title="pid comm", loc="best", fontsize=9)
    else:
        _empty(ax, "no process in this trace")
    _save(fig, path)
    return ax


# -- address-space timeline ----------------------------------------------------------------------------
def _join_subpixel(starts, ends, born, died, flags, perms, fig):
    """Join the bars of one address range and colour whose gaps are narrower
    than a pixel (:func:`mmtrace.report.views.join_lifetimes`): a loop that
    maps and unmaps the same range 100,000 times draws as the one bar it
    looks like, not 100,000 polygons (the picture is the same)."""
    if len(born) < 2:
        return starts, ends, born, died, flags, perms
    keys = [_colour_key(p, int(f)) for p, f in zip(perms, flags)]
    span = float(max(died.max(), born.max()) - born.min()) or 1.0
    first, b, d, _ = join_lifetimes(starts, ends, keys, born, died, span / (fig.get_figwidth() * DPI))
    return (starts[first], ends[first], b, d, flags[first], [perms[i] for i in first.tolist()])


def address_timeline(trace, pid: int | None = None, path=None, *, ax=None, max_regions: int = 10):
    """One process's address space over time: each VMA a bar from its birth to its end.

    x: time since recording start; y: address, in regions (groups of VMAs
    separated by wide empty stretches): the stretches between regions are
    cut out and marked with a ``≈`` band giving their size, and each region
    gets a height that keeps small regions (stack, heap) readable.  Y ticks
    give each region's first and last address; the label at the right names
    it (files mapped, [heap], [stack], anon, hugetlb) with its size.
    Colours are permissions; hugetlb VMAs are pink.  ``pid``: default the
    busiest process.  Returns the Axes.
    """
    rd = report_data(trace)
    if pid is None:
        busy = rd.busiest(1)
        pid = busy[0] if busy else -1
    pid = int(pid)
    fig, ax = _new(ax, size=(12, 7))
    unit, div, t0 = time_axis(rd)
    v = rd.vmas_shown()
    v = v[v["pid"] == pid]
    procs = rd.processes().set_index("pid")
    ex = procs.loc[pid, "exit_ts"] if pid in procs.index else pd.NA
    t_end = rd.t1 if rd.t1 else (int(v["born_ts"].max()) if len(v) else t0)
    if ex is not pd.NA and len(v):
        t_end = max(int(ex), int(v["died_ts"].max()))
    ax.set_xlabel(XLABEL.format(unit=unit))
    ax.set_ylabel("address (empty stretches between regions cut out)")
    ax.set_title(f"address space of {_label(rd, pid)}: each VMA from its creation to its end")
    if len(v) == 0:
        _empty(ax, f"no VMA known for pid {pid}")
        _save(fig, path)
        return ax
    starts = v["start"].to_numpy(np.uint64).astype(object)
    ends = v["end"].to_numpy(np.uint64).astype(object)
    lay = region_layout(starts, ends, max_regions=max_regions)
    regions, bases, heights = lay.regions, lay.bases, lay.heights

    def y_of(addr: int, k: int) -> float:
        s, e = regions[k]
        return float(bases[k] + heights[k] * (addr - s) / max(1, e - s))

    rstarts = [s for s, _ in regions]
    from bisect import bisect_right

    born = (v["born_ts"].to_numpy(np.int64) - t0) / div
    died_raw = v["died_ts"].to_numpy(np.int64)
    died = (np.where(died_raw < 0, t_end, died_raw) - t0) / div
    flags = v["vm_flags"].to_numpy(np.uint64)
    perms = v["perms"].astype(str).tolist()
    starts, ends, born, died, flags, perms = _join_subpixel(starts, ends, born, died, flags, perms, fig)
    polys, colours = [], []
    cmap = PERM_COLOURS
    seen = set()
    for i, (s, e) in enumerate(zip(starts, ends)):
        k = bisect_right(rstarts, s) - 1
        y0, y1 = y_of(s, k), y_of(e, k)
        x0, x1 = born[i], max(died[i], born[i])
        polys.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        key = _colour_key(perms[i], int(flags[i]))
        seen.add(key)
        colours.append(cmap[key])
    # An edge in the face colour gives every VMA at least a hairline, however small.
    pc = PolyCollection(polys, facecolors=colours, edgecolors=colours, linewidths=0.6, alpha=0.85)
    ax.add_collection(pc)
    x_lo = float(born.min())
    x_hi = max(float(died.max()), (t_end - t0) / div)
    pad = (x_hi - x_lo) * 0.01 or 1e-3
    ax.set_xlim(x_lo - pad, x_hi + pad)
    ax.set_ylim(-0.01, float(bases[-1] + heights[-1]) + 0.01)
    # Regions: ticks at both ends, a name at the right, cut-out bands between.
    names = region_names(rd, pid, v, regions)
    ticks, labels = [], []
    for k, (s, e) in enumerate(regions):
        ticks += [bases[k], bases[k] + heights[k]]
        labels += [f"{s:#x}", f"{e:#x}"]
        ax.text(1.005, bases[k] + heights[k] / 2, f"{names[k]}\n{_size(e - s)}", transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=8)
        if k + 1 < len(regions):
            g0, g1 = bases[k] + heights[k], bases[k + 1]
            ax.axhspan(g0, g1, color="#eeeeee", zorder=0)
            ax.text(0.5, (g0 + g1) / 2, f"≈ {_size(regions[k + 1][0] - e)} empty, cut out ≈",
                    transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=7, color="#777777")
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7, family="monospace")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=cmap[k], label=k) for k, _ in list(PERM_COLOURS.items()) if k in seen],
              title="perms", loc="upper left", fontsize=8, framealpha=0.9)
    _save(fig, path)
    return ax


# -- splits and merges ---------------------------------------------------------------------------------
def splits_merges(trace, path=None, *, ax=None, bins: int = 60):
    """Split and merge points per time bin, all processes: splits up, merges down.

    One point is one ``__split_vma`` (splits) or one boundary joined
    (merges; new-range merges, a new mapping taken into a neighbour, stacked
    below them).  A line on the right axis gives the running totals.
    Returns the Axes.
    """
    rd = report_data(trace)
    fig, ax = _new(ax)
    unit, div, t0 = time_axis(rd)
    s = rd.safe("split_index")
    m = rd.safe("merge_index")
    s = s if s is not None else pd.DataFrame(columns=["ts", "count", "kind"])
    m = m if m is not None else pd.DataFrame(columns=["ts", "count", "kind"])
    # Bins over the span of activity (every change shown), not the whole recording.
    ch = rd.change_index()
    cut = rd.launcher_until()
    if len(ch) and cut:
        ch = ch[ch["ts"] >= ch["pid"].map(cut).fillna(-1).astype(np.int64)]
    tss = [d["ts"].to_numpy(np.int64) for d in (s, m, ch) if len(d)]
    if tss:
        x_min = (min(int(t.min()) for t in tss) - t0) / div
        x_max = (max(int(t.max()) for t in tss) - t0) / div
    else:
        x_min, x_max = 0.0, ((rd.t1 or t0) - t0) / div
    if x_max <= x_min:
        x_min, x_max = _span(x_min, x_max)
    edges = np.linspace(x_min, x_max, bins + 1)
    width = edges[1] - edges[0]

    def hist(d):
        if len(d) == 0:
            return np.zeros(bins)
        x = (d["ts"].to_numpy(np.int64) - t0) / div
        h, _ = np.histogram(x, bins=edges, weights=d["count"].to_numpy(np.float64))
        return h

    hs = hist(s)
    mk = m[m["kind"] == "merge"] if len(m) else m
    mn = m[m["kind"] == "new_range_merge"] if len(m) else m
    hm, hn = hist(mk), hist(mn)
    ax.bar(edges[:-1], hs, width=width, align="edge", color="#0072B2", label=f"split points ({int(hs.sum())})")
    ax.bar(edges[:-1], -hm, width=width, align="edge", color="#D55E00", label=f"merge points ({int(hm.sum())})")
    ax.bar(edges[:-1], -hn, bottom=-hm, width=width, align="edge", color="#E69F00",
           label=f"new-range merges ({int(hn.sum())})")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(XLABEL.format(unit=unit))
    ax.set_ylabel(f"points per {width:.3g} {unit} (splits up, merges down)")
    ax.set_title("VMA splits and merges over time, all processes")
    lim = max(1.0, float(hs.max()), float((hm + hn).max())) * 1.1
    ax.set_ylim(-lim, lim)
    ax.set_xlim(*_span(x_min, x_max, 0.01))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{abs(y):g}"))
    ax.grid(True, alpha=0.3)
    tw = ax.twinx()
    tw.plot(edges[1:], np.cumsum(hs), color="#0072B2", lw=1, ls="--")
    tw.plot(edges[1:], np.cumsum(hm + hn), color="#D55E00", lw=1, ls="--")
    tw.set_ylabel("running total (dashed)")
    tw.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=9)
    if not hs.sum() and not (hm + hn).sum():
        _empty(ax, "no split or merge in this trace")
    _save(fig, path)
    return ax


# -- hugetlb -------------------------------------------------------------------------------------------
def hugetlb(trace, path=None, *, ax=None):
    """Reserved huge pages over time: the kernel's ``resv_huge_pages`` (read in
    the kernel at each sample, shown signed so an underflow goes below 0)
    against the model's ``model_resv``; thin lines: free pages and the
    sysfs pool samples; red lines: anomalies, labelled with their kind.
    Returns the Axes."""
    rd = report_data(trace)
    fig, ax = _new(ax)
    unit, div, t0 = time_axis(rd)
    h = rd.safe("hugetlb")
    ax.set_xlabel(XLABEL.format(unit=unit))
    ax.set_ylabel("huge pages")
    ax.set_title("hugetlb reservations: the model against the kernel's resv_huge_pages")
    if h is None or len(h) == 0:
        _empty(ax, "no hugetlb activity in this trace")
        _save(fig, path)
        return ax
    x = (h["ts"].to_numpy(np.int64) - t0) / div
    x_lo, x_hi = _span(float(x.min()), float(x.max()), 0.05)
    xs = np.append(x, x_hi)

    def ext(col):
        y = h[col].to_numpy(np.int64)
        return np.append(y, y[-1])

    pool = rd.trace.hugepages()
    if len(pool):
        order = None
        try:
            order = int(rd.trace.raw_events("hugetlb")["order"].iloc[0])
        except Exception:  # noqa: BLE001
            pass
        if order is not None:
            pool = pool[pool["size_kb"] == (4 << order)]
        px = (pool["ts"].to_numpy(np.int64) - t0) / div
        inside = (px >= x_lo) & (px <= x_hi)
        if inside.any():
            ax.plot(px[inside], pool["resv_hugepages"].to_numpy(np.int64)[inside], ".", color="#999999", ms=5,
                    label="resv_hugepages, sysfs pool samples (every 100 ms)")
    ax.step(xs, ext("free_huge_pages"), where="post", color="#009E73", lw=1, alpha=0.7, label="free_huge_pages (kernel)")
    ax.step(xs, ext("kernel_resv"), where="post", color="#000000", lw=2.4, label="resv_huge_pages (kernel)")
    ax.plot(x, h["kernel_resv"].to_numpy(np.int64), "o", color="#000000", ms=4)
    ax.step(xs, ext("model_resv"), where="post", color="#56B4E9", lw=1.8, ls="--", label="model_resv (rebuilt from the trace)")
    a = rd.safe("anomalies")
    if a is not None and len(a):
        for j, r in enumerate(a.itertuples(index=False)):
            xa = (int(r.ts) - t0) / div
            right = xa > (x_lo + x_hi) / 2  # labels point inwards, never past the frame
            ax.axvline(xa, color="#D00000", lw=1, alpha=0.7)
            ax.annotate(f"{r.kind} (pid {r.pid})", (xa, 1.0), xycoords=ax.get_xaxis_transform(),
                        xytext=(-4 if right else 4, -6 - 12 * (j % 5)), textcoords="offset points", color="#D00000",
                        fontsize=8, va="top", ha="right" if right else "left")
        ax.plot([], [], color="#D00000", lw=1, label=f"anomalies ({len(a)})")
    lo = min(0, int(h["kernel_resv"].min()), int(h["model_resv"].min()))
    hi = max(int(h["kernel_resv"].max()), int(h["model_resv"].max()), int(h["free_huge_pages"].max()), 1)
    ax.set_ylim(lo - 0.5, hi + max(1.0, 0.25 * (hi - lo)))
    if lo < 0:
        ax.axhline(0, color="#555555", lw=0.8, ls=":")
        i = int(np.argmin(h["kernel_resv"].to_numpy(np.int64)))
        kmin = int(h["kernel_resv"].iloc[i])
        ax.annotate(f"resv_huge_pages read {int(h['resv_huge_pages'].iloc[i])}\n= {kmin} as signed: underflow",
                    (x[i], kmin), xytext=(-12, 14), textcoords="offset points", ha="right", fontsize=8,
                    arrowprops={"arrowstyle": "->", "color": "#000000"})
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlim(x_lo, x_hi)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, framealpha=0.9)
    _save(fig, path)
    return ax
