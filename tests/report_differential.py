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


class OldSampler:
    """:class:`mmtrace.report.stream.Sampler`'s ``add`` as it was (main at b423de2: each
    group's rows copied out of a copy of the chunk); the rest is the new class's."""

    def __new__(cls, cap: int, by=("pid", "kind", "cause")):
        import numpy as np

        from mmtrace.report.stream import Sampler

        s = Sampler(cap, by)

        def add(df):
            if len(df) == 0:
                return
            df = df.assign(_seq=np.arange(s.total, s.total + len(df)))
            s.total += len(df)
            by_ = [c for c in s.by if c in df.columns]
            for key, g in df.groupby(by_, sort=False, observed=True) if by_ else [((), df)]:
                st = s._groups.setdefault(key if isinstance(key, tuple) else (key,), [1, 0, [], None])
                idx = st[1] + np.arange(len(g))
                keep = g[idx % st[0] == 0].assign(_gi=idx[idx % st[0] == 0])
                st[1] += len(g)
                st[2].append(keep)
                st[3] = g.iloc[[-1]].assign(_gi=st[1] - 1)
                s._kept += len(keep)
            while s._kept > 2 * s.cap:
                s._thin()

        s.add = add
        return s


def assert_same_samples(frames, cap: int, by=("pid", "kind", "cause")) -> int:
    """The new and the old Sampler fed the same chunks keep the same rows; returns the rows kept."""
    import pandas as pd

    from mmtrace.report.stream import Sampler

    new, old = Sampler(cap, by), OldSampler(cap, by)
    for f in frames:
        new.add(f)
        old.add(f)
    a, b = new.frame(), old.frame()
    pd.testing.assert_frame_equal(a, b)
    return len(a)
