"""The VMA counts and lifetimes fed by the changes pass against a second replay.

:func:`assert_same_timeline` computes ``vma_counts`` and ``vmas`` of a trace
three ways and requires identical frames: the old path (``ReportData._sweep_replay``:
``Model.sweep`` queried at every change's ``ts_end``, each process's start
and the end), the streamed report's (:func:`mmtrace.report.write_report`:
the :class:`mmtrace.model.timeline.VmaTimeline` fed by the one pass that
writes the changes table), and :class:`ReportData` used alone (its own
``iter_changes`` pass).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import mmtrace
from mmtrace.report import ReportData, write_report


def _sorted(vc: pd.DataFrame, lt: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (vc.sort_values(["ts", "pid"], kind="stable", ignore_index=True),
            lt.sort_values(["pid", "start", "born_ts", "end"], kind="stable", ignore_index=True))


def _window(window: int | None):
    import mmtrace.model.model as mm

    saved = mm.DEFAULT_CHECKPOINT_EVERY
    if window is not None:
        mm.DEFAULT_CHECKPOINT_EVERY = window
    return lambda: setattr(mm, "DEFAULT_CHECKPOINT_EVERY", saved)


def assert_same_timeline(path, tmp: Path, *, window: int | None = None) -> int:
    """The three ways on the trace at ``path`` (``window``: tree writes per window
    of the changes pass); returns the rows compared (counts + lifetimes)."""
    old = _sorted(*ReportData(mmtrace.open(path))._sweep_replay())
    restore = _window(window)
    try:
        res = write_report(mmtrace.open(path), tmp / "report")
        streamed = _sorted(res.data.vma_counts(), res.data.vmas())
        alone = _sorted(ReportData(mmtrace.open(path)).vma_counts(), ReportData(mmtrace.open(path)).vmas())
    finally:
        restore()
    assert res.errors == {}, res.errors
    for how, new in (("streamed", streamed), ("alone", alone)):
        for name, a, b in zip(("vma_counts", "vmas"), old, new):
            pd.testing.assert_frame_equal(b, a, check_dtype=True, obj=f"{name} ({how}, window={window})")
    return len(old[0]) + len(old[1])
