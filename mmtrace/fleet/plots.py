"""Cross-host figures of a fleet (matplotlib, Agg), each from a small aggregate.

Each function takes the aggregate frame (computed on the cluster by
:mod:`mmtrace.fleet.report`), saves a PNG when ``path`` is given and
returns the Axes, as :mod:`mmtrace.report.plots` does for one trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..report.plots import DPI  # first: picks the Agg backend unless the caller chose

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["vma_counts_by_host", "splits_merges_by_comm", "anomalies_by_kernel"]


def _label(v, width: int = 28) -> str:
    """A tick label: "(none)" for an empty value, long ones cut with an ellipsis."""
    v = str(v) if v == v and v is not None else ""
    if not v:
        return "(none)"
    return v if len(v) <= width else v[: width - 1] + "…"


def _ticks(ax, x, labels) -> None:
    slant = len(labels) > 6 or any(len(s) > 14 for s in labels)
    ax.set_xticks(x, labels, rotation=30 if slant else 0, ha="right" if slant else "center")


def _save(ax, path: str | Path | None):
    ax.figure.tight_layout()
    if path is not None:
        ax.figure.savefig(path, dpi=DPI)
    return ax


def vma_counts_by_host(per_host: pd.DataFrame, path=None):
    """Peak VMAs of a process per host: the largest and the median, and the processes counted.

    ``per_host``: index ``host``, columns ``max``, ``median``, ``processes``.
    """
    df = per_host.sort_index()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(df) + 2), 4.2))
    x = np.arange(len(df))
    ax.bar(x - 0.2, df["max"], 0.4, label="largest process", color="#0072B2")
    ax.bar(x + 0.2, df["median"], 0.4, label="median process", color="#56B4E9")
    for xi, n, top in zip(x, df["processes"], df["max"]):
        ax.annotate(f"{int(n)}", (xi, top), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    _ticks(ax, x, [_label(h) for h in df.index])
    ax.set_ylabel("peak VMAs of a process")
    ax.set_title("VMAs per process, by host (numbers: processes)")
    ax.margins(y=0.1)
    ax.legend(fontsize=8)
    return _save(ax, path)


def splits_merges_by_comm(per_comm: pd.DataFrame, path=None, top: int = 25):
    """Split and merge points summed over the fleet, per process name (the ``top`` busiest).

    ``per_comm``: index ``comm``, columns ``splits``, ``merges``, ``hosts``.
    """
    df = per_comm.assign(_n=per_comm["splits"] + per_comm["merges"]).sort_values("_n", ascending=False).head(top)
    df = df.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.3 * len(df) + 1.2)))
    y = np.arange(len(df))
    ax.barh(y + 0.2, df["splits"], 0.4, label="split points", color="#D55E00")
    ax.barh(y - 0.2, df["merges"], 0.4, label="merge points", color="#009E73")
    ax.set_yticks(y, [f"{_label(c)} ({int(h)} host{'s' if h != 1 else ''})" for c, h in zip(df.index, df["hosts"])], fontsize=8)
    ax.set_xlabel("points, all traces")
    ax.set_title("Splits and merges per process name")
    ax.legend(fontsize=8)
    return _save(ax, path)


def anomalies_by_kernel(per_kernel: pd.DataFrame, traces: pd.Series, path=None):
    """Anomalies per trace for each kernel release, stacked by kind.

    ``per_kernel``: index ``kernel``, one column per anomaly kind (counts);
    ``traces``: analysed traces per kernel (the divisor; a kernel with
    traces and no anomaly shows an empty bar).
    """
    kernels = sorted(set(traces.index) | set(per_kernel.index))
    df = per_kernel.reindex(kernels).fillna(0)
    n = traces.reindex(kernels).fillna(0)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(kernels) + 2), 4.2))
    x = np.arange(len(kernels))
    bottom = np.zeros(len(kernels))
    for kind in df.columns:
        v = (df[kind] / n.where(n > 0, 1)).to_numpy(float)
        ax.bar(x, v, 0.6, bottom=bottom, label=str(kind))
        bottom += v
    for xi, k, b in zip(x, n, bottom):
        ax.annotate(f"{int(k)} trace{'s' if k != 1 else ''}", (xi, b), xytext=(0, 2), textcoords="offset points",
                    ha="center", fontsize=7)
    _ticks(ax, x, [_label(k) for k in kernels])
    ax.set_ylabel("anomalies per trace")
    ax.set_title("Anomalies per kernel release")
    if len(df.columns):
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no anomaly in any trace", transform=ax.transAxes, ha="center", va="center")
    ax.set_ylim(bottom=0, top=max(1.0, float(bottom.max()) * 1.2 if len(bottom) else 1.0))
    return _save(ax, path)
