"""The change model at several window sizes side by side.

Issue 10's differential test ran the old path (``mmtrace.model._legacy``:
the whole trace as one window of tuple records, ``run_records``, an observer
copying the tree per change group) against the windowed one on the golden
and live traces and required identical frames (commit "model: changes() on
the windowed replay ..."); the old path was then deleted.  What stays:
:func:`assert_same` requires identical changes, splits, merges and
split/merge counts whatever the window size (small windows put syscalls
across window ends), against the one-window replay.
"""

from __future__ import annotations

import pandas as pd

from mmtrace.detect import merges, split_merge_counts, splits
from mmtrace.model import changes

WINDOWS = (None, 97, 5)


def _frames(trace, ch: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        "changes": ch,
        "splits": splits(trace, ch),
        "merges": merges(trace, ch),
        "counts": split_merge_counts(ch).sort_values("pid", ignore_index=True),
    }


def assert_same(trace, windows=WINDOWS) -> int:
    """Old and new frames of ``trace`` are equal; returns the number of changes compared."""
    old = _frames(trace, changes(trace, window=1 << 62))
    # issue 10 (speed): the per-row ChangeObserver kept beside the columnar one until they agree
    from mmtrace.model import _changes_old

    for w in windows:
        pd.testing.assert_frame_equal(changes(trace, window=w), _changes_old.changes(trace, window=w),
                                      check_dtype=True, obj=f"columnar vs per-row changes (window={w})")
    # issue 10 (speed): the per-change split/merge points kept beside the columnar ones until they agree
    from mmtrace.detect import _structure_old

    ch = old["changes"]
    for name, fn in (("splits", _structure_old.splits), ("merges", _structure_old.merges)):
        pd.testing.assert_frame_equal(old[name], fn(trace, ch), check_dtype=True, obj=f"columnar vs per-change {name}")
    pd.testing.assert_frame_equal(old["counts"], _structure_old.split_merge_counts(ch).sort_values("pid", ignore_index=True),
                                  check_dtype=True, obj="columnar vs per-change split/merge counts")
    from mmtrace.detect import structure

    assert structure.split_merge_table(ch) == _structure_old.split_merge_table(ch)
    assert structure.write_sequences(trace, ch) == _structure_old.write_sequences(trace, ch)
    for w in windows:
        new = _frames(trace, changes(trace, window=w))
        for name, df in old.items():
            pd.testing.assert_frame_equal(new[name], df, check_dtype=True, obj=f"{name} (window={w})")
    return len(old["changes"])
