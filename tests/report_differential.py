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

import numpy as np
import pandas as pd

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


# mmtrace.report.stream.Sampler as it was at aaf223b (a pandas copy per group
# per chunk), verbatim but for its name and one import.
class OldSampler:
    """At most ~``2 * cap`` rows of a table that arrives in chunks, spread evenly
    over each group of ``by``: the rows of a group are kept one in ``stride``,
    the stride of the biggest group doubled while too many are kept (the last
    row of every group kept too).  :meth:`frame` then picks at most ``cap``
    with :func:`mmtrace.report.views.sample_rows`: a table that never exceeds
    ``cap`` rows is kept whole, as the page showed it before."""

    def __init__(self, cap: int, by=("pid", "kind", "cause")) -> None:
        self.cap = int(cap)
        self.by = list(by)
        self.total = 0
        self._groups: dict[tuple, list] = {}  # key -> [stride, seen, [frames], last frame]
        self._kept = 0

    def add(self, df: pd.DataFrame) -> None:
        if len(df) == 0:
            return
        seq = np.arange(self.total, self.total + len(df))
        self.total += len(df)
        by = [c for c in self.by if c in df.columns]
        # each group's row positions, groups in order of their first row (as groupby(sort=False) yields them);
        # only the rows kept are copied out of df
        groups = sorted(df.groupby(by, sort=False, observed=True).indices.items(), key=lambda kv: kv[1][0]) \
            if by else [((), np.arange(len(df)))]
        for key, pos in groups:
            st = self._groups.setdefault(key if isinstance(key, tuple) else (key,), [1, 0, [], None])
            idx = st[1] + np.arange(len(pos))
            m = idx % st[0] == 0
            keep = df.iloc[pos[m]].assign(_seq=seq[pos[m]], _gi=idx[m])
            st[1] += len(pos)
            st[2].append(keep)
            st[3] = df.iloc[pos[-1:]].assign(_seq=seq[pos[-1:]], _gi=st[1] - 1)
            self._kept += len(keep)
        while self._kept > 2 * self.cap and self._thin():
            pass

    def _thin(self) -> bool:
        """Halve what the biggest group keeps; False when every group is down
        to its first row (more groups than ``2 * cap``: nothing left to drop)."""
        sizes = {k: sum(len(f) for f in st[2]) for k, st in self._groups.items()}
        k = max(sizes, key=sizes.get)
        if sizes[k] <= 1:
            return False
        st = self._groups[k]
        st[0] *= 2
        kept = pd.concat(st[2]) if len(st[2]) > 1 else st[2][0]
        kept = kept[kept["_gi"].to_numpy() % st[0] == 0]
        self._kept += len(kept) - sizes[k]
        st[2] = [kept]
        return True

    def frame(self) -> pd.DataFrame:
        """The rows kept (at most ``cap``, in arrival order), without the helper columns."""
        parts = []
        for st in self._groups.values():
            parts += st[2]
            if st[3] is not None:
                parts.append(st[3])
        if not parts:
            return pd.DataFrame()
        df = pd.concat(parts, ignore_index=True).drop_duplicates("_seq").sort_values("_seq", ignore_index=True)
        from mmtrace.report.views import sample_rows

        df = df.iloc[sample_rows(df, self.cap, by=self.by)].reset_index(drop=True)
        return df.drop(columns=["_seq", "_gi"])


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
