"""Golden: the streamed ``mmtrace report`` writes the same CSVs and text as the whole-frame one
(tests/report_differential.py), whatever the window size."""

from __future__ import annotations

import pytest

from tests.golden.make_golden import DATA
from tests.report_differential import assert_same_report

pytestmark = pytest.mark.golden


@pytest.mark.parametrize("window", (None, 97, 5))
@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_streamed_report_is_the_whole_frame_one(tmp_path, name, window):
    assert assert_same_report(DATA / name, tmp_path, window=window) > 0


def test_sampler_keeps_small_tables_whole_and_bounds_big_ones():
    import numpy as np
    import pandas as pd

    from mmtrace.report.stream import Sampler

    small = Sampler(100)
    df = pd.DataFrame({"pid": [1, 1, 2] * 10, "kind": ["map"] * 30, "cause": ["mmap"] * 30, "x": np.arange(30)})
    for i in range(0, 30, 7):
        small.add(df.iloc[i:i + 7])
    assert small.frame()["x"].tolist() == list(range(30)) and small.total == 30
    big = Sampler(50)
    n = 20_000
    df = pd.DataFrame({"pid": np.where(np.arange(n) % 10 == 0, 2, 1), "kind": "map", "cause": "mmap", "x": np.arange(n)})
    for i in range(0, n, 999):
        big.add(df.iloc[i:i + 999])
        assert big._kept <= 2 * 50 + 2
    f = big.frame()
    assert len(f) <= 50 and big.total == n
    for pid, g in f.groupby("pid"):  # every process over its whole span, its last row kept
        x = g["x"].to_numpy()
        assert x.max() == df[df["pid"] == pid]["x"].max() and x.min() < n // 10
