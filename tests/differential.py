"""Old and new change models side by side (issue 10's differential test).

``mmtrace.model._legacy`` is the code before issue 10: the whole trace as one
window of tuple records replayed by ``run_records`` with an observer that
copies the tree per change group.  The new path is :func:`mmtrace.model.changes`
on the windowed replay.  :func:`assert_same` requires identical frames for
changes, splits, merges and the processes' split/merge counts, at several
window sizes (small windows put syscalls across window ends).
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
    from mmtrace.model._legacy.changes import changes as legacy_changes

    old = _frames(trace, legacy_changes(trace))
    for w in windows:
        new = _frames(trace, changes(trace, window=w))
        for name, df in old.items():
            pd.testing.assert_frame_equal(new[name], df, check_dtype=True, obj=f"{name} (window={w})")
    return len(old["changes"])
