"""Differential: the report's lifetimes table (ReportData.vmas), gathered sorted from the
timeline's own table, is the frame the old code made (kept here verbatim: lifetimes(),
perms inserted, paths added, dev dropped, then sorted)."""

from __future__ import annotations

import pandas as pd
import pytest

import mmtrace
from mmtrace.model import iter_changes
from mmtrace.model.vmatree import perms_column
from mmtrace.report.frames import _model, _paths_of, report_data
from tests.golden.make_golden import DATA

pytestmark = pytest.mark.golden


def old_lifetimes(rd) -> pd.DataFrame:
    tl = rd.timeline()
    for _ in iter_changes(rd.trace, sink=tl.add):
        pass
    lt = tl.lifetimes()
    lt.insert(3, "perms", perms_column(lt["vm_flags"].to_numpy()))
    lt["path"] = _paths_of(getattr(_model(rd.trace), "paths", {}) or {}, lt["dev"].to_numpy(), lt["ino"].to_numpy())
    return lt.drop(columns=["dev"]).rename(columns={"ino": "inode"}).sort_values(["pid", "start", "born_ts"],
                                                                                 ignore_index=True)


@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_lifetimes_are_the_old_sorted_frame(name):
    t = mmtrace.open(DATA / name)
    new = report_data(t).vmas()
    old = old_lifetimes(report_data(mmtrace.open(DATA / name)))
    assert len(new) >= 2  # the synthetic trace has two; the demo hundreds
    pd.testing.assert_frame_equal(new, old, check_exact=True)
