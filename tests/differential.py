"""The change model at several window sizes side by side.

Issue 10's differential test ran the old path (``mmtrace.model._legacy``:
the whole trace as one window of tuple records, ``run_records``, an observer
copying the tree per change group) against the windowed one on the golden
and live traces and required identical frames (commit "model: changes() on
the windowed replay ..."); the old path was then deleted.  The same for the
columnar change classification and split/merge points (per-row observer and
per-change points, compared until commit "tests/differential: per-change
split/merge points ...", then deleted).  What stays:
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
    """Frames of ``trace`` at every window size equal the one-window ones; returns the number of changes compared."""
    old = _frames(trace, changes(trace, window=1 << 62))
    for w in windows:
        new = _frames(trace, changes(trace, window=w))
        for name, df in old.items():
            pd.testing.assert_frame_equal(new[name], df, check_dtype=True, obj=f"{name} (window={w})")
    return len(old["changes"])
