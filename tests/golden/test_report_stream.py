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


def test_sampler_with_more_groups_than_it_keeps_rows_ends():
    """More groups than ``2 * cap`` (a fork-heavy trace: one group per
    process): thinning stops once every group is down to its first row
    (it used to double a stride forever), and every group keeps its first and
    last row (views.sample_rows keeps two per group whatever the cap)."""
    import numpy as np
    import pandas as pd

    from mmtrace.report.stream import Sampler

    s = Sampler(5)
    n = 300
    df = pd.DataFrame({"pid": np.arange(n) // 4, "kind": "map", "cause": "mmap", "x": np.arange(n)})
    for i in range(0, n, 37):
        s.add(df.iloc[i:i + 37])
    assert s.total == n and s._kept <= n // 4 + 4  # the first row of each group, and the chunk that came last
    f = s.frame()
    assert f["x"].is_monotonic_increasing and len(f) == 2 * (n // 4)
    ends = f.groupby("pid")["x"].agg(["min", "max"])
    assert (ends["min"] == ends.index * 4).all() and (ends["max"] == ends.index * 4 + 3).all()


def test_sampler_is_the_old_one():
    """The Sampler that copies only the rows it keeps against the old one
    (tests/report_differential.py), on chunks with groups appearing late, ties
    and one-group chunks, and on the demo's changes."""
    import numpy as np
    import pandas as pd

    import mmtrace
    from tests.report_differential import assert_same_samples

    rng = np.random.default_rng(7)
    n = 30_000
    df = pd.DataFrame({"pid": rng.choice([1, 2, 3, 4], n, p=[.6, .2, .15, .05]),
                       "kind": rng.choice(["map", "unmap", "split"], n), "cause": "mmap", "x": np.arange(n)})
    df.loc[n // 2:, "pid"] = rng.choice([5, 6], n - n // 2)  # groups that come late
    for cap in (10, 50, 1000):
        assert assert_same_samples([df.iloc[i:i + 997] for i in range(0, n, 997)], cap) > 0
    # more groups than 2 x cap, as a trace of thousands of processes gives
    m = 3000
    forks = pd.DataFrame({"pid": np.arange(m) // 5, "kind": rng.choice(["map", "exit"], m), "cause": "mmap",
                          "x": np.arange(m)})
    for cap in (10, 200):
        assert assert_same_samples([forks.iloc[i:i + 97] for i in range(0, m, 97)], cap) > 0
        assert assert_same_samples([df.iloc[i:i + 997] for i in range(0, n, 997)], cap, by=()) > 0
    ch = mmtrace.open(DATA / "demo.trace").changes().drop(columns=["before_vmas", "after_vmas"])
    assert assert_same_samples([ch.iloc[i:i + 5] for i in range(0, len(ch), 5)], 20) > 0
