"""Differential: the report's brk ends (views._brk_of), read part by part, are what
the whole syscall table gave (the expression it replaced, kept here verbatim)."""

from __future__ import annotations

import numpy as np
import pytest

import mmtrace
from mmtrace.report import views
from mmtrace.report.frames import report_data
from tests.golden.make_golden import DATA

pytestmark = pytest.mark.golden


def old_brk_of(trace) -> dict[int, list[int]]:
    """views._brk_of before it read only the brk rows (the whole table, then a filter)."""
    sc = trace.raw_events("syscall")
    if not len(sc):
        return {}
    b = sc[(sc["syscall"] == "brk") & (sc["ret"] > 0)]
    return {int(p): g.astype(np.int64).tolist() for p, g in b.groupby("tgid", observed=True)["ret"]}


@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_brk_ends_are_the_whole_tables(name):
    t = mmtrace.open(DATA / name)
    new = views._brk_of(report_data(t))
    assert new == old_brk_of(t)
    if name == "demo.trace":
        assert new and all(v for v in new.values())  # the demo calls brk: the comparison is not of two empties
