"""The streamed report against the whole-frame one, side by side.

:func:`assert_same_report` writes the report of a trace twice: the way
``mmtrace report`` did before the report streamed (every table as one
DataFrame from :class:`mmtrace.report.ReportData`, written by
``csv_frame(df).to_csv``, the text from those frames) and the way it does
now (:func:`mmtrace.report.write_report`: one pass over ``iter_changes``,
tables appended window by window, the text from light indexes), and
requires the same bytes in every CSV and the same terminal text.
"""

from __future__ import annotations

from pathlib import Path

import mmtrace
from mmtrace.report import ReportData, write_report
from mmtrace.report.export import TABLES, csv_frame, table
from mmtrace.report.text import report_text


def whole_frames(path, out: Path) -> str:
    """The old way: every table a whole frame, written by pandas; returns the text."""
    rd = ReportData(mmtrace.open(path))
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        csv_frame(table(rd, name)).to_csv(out / f"{name}.csv", index=False)
    return report_text(rd, width=150)


def assert_same_report(path, tmp: Path, *, window: int | None = None) -> int:
    """Both ways on the trace at ``path`` (``window``: tree writes per window of the
    streamed pass, small to put changes across window ends); returns the changes compared."""
    old = whole_frames(path, tmp / "whole")
    t = mmtrace.open(path)
    if window is not None:
        import mmtrace.model.model as mm

        saved, mm.DEFAULT_CHECKPOINT_EVERY = mm.DEFAULT_CHECKPOINT_EVERY, window
    try:
        res = write_report(t, tmp / "streamed")
    finally:
        if window is not None:
            mm.DEFAULT_CHECKPOINT_EVERY = saved
    assert res.errors == {}, res.errors
    new = report_text(res.data, width=150)
    assert new == old
    for name in TABLES:
        a = (tmp / "whole" / f"{name}.csv").read_bytes()
        b = (tmp / "streamed" / f"{name}.csv").read_bytes()
        assert a == b, name
    return (tmp / "whole" / "changes.csv").read_bytes().count(b"\n") - 1
