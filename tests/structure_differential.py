"""The splits' and merges' ``writes`` made columnar against the old row-by-row loop.

:func:`write_sequences_rows` is :func:`mmtrace.detect.structure.write_sequences`
as it was before issue 10's columnar version (a Python loop over each
change's span of writes), kept verbatim as the reference;
:func:`assert_same_writes` requires the same text for every change of a
trace, the changes as ``trace.changes()`` gives them and also with each
change's span widened (more writes of other trees and threads in it, spans
longer than the vectorised limit, more than 32 writes shown).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import mmtrace
from mmtrace.detect import structure


def write_sequences_rows(trace, ch: pd.DataFrame) -> list[str]:
    """:func:`mmtrace.detect.structure.write_sequences` as it was (main at b423de2): one change at a time."""
    tw = trace.raw_events("tree_write")
    if len(tw) == 0 or len(ch) == 0:
        return [""] * len(ch)
    tw = tw.sort_values("ts", kind="stable")
    ts = tw["ts"].to_numpy(np.int64)
    lo_ix = np.searchsorted(ts, ch["ts"].to_numpy(np.int64), side="left").tolist()
    hi_ix = np.searchsorted(ts, ch["ts_end"].to_numpy(np.int64), side="right").tolist()
    tree = tw["tree"].to_numpy(np.uint64).tolist()
    tid = tw["tid"].to_numpy(np.int64).tolist()
    fn = tw["fn"].astype(str).tolist()
    idx = tw["index"].to_numpy(np.uint64).tolist()
    last = tw["last"].to_numpy(np.uint64).tolist()
    val = tw["val"].to_numpy(np.uint64).tolist()
    out = []
    for a, b, r_tree, r_tid, r_sc in zip(lo_ix, hi_ix, ch["tree"].to_numpy(np.uint64).tolist(),
                                         ch["tid"].to_numpy(np.int64).tolist(), ch["syscall"].tolist()):
        if r_sc:
            sel = [i for i in range(a, b) if tree[i] == r_tree and tid[i] == r_tid]
        else:
            sel = [i for i in range(a, b) if tree[i] == r_tree]
        text = "; ".join(
            f"{fn[i]} [{idx[i]:#x}, {last[i]:#x}] = {val[i]:#x}" if val[i] else f"{fn[i]} [{idx[i]:#x}, {last[i]:#x}] = NULL"
            for i in sel[:32]
        )
        out.append(text + (f"; ... {len(sel) - 32} more" if len(sel) > 32 else ""))
    return out


def assert_same_writes(path) -> int:
    """Old and new ``writes`` of every change of the trace at ``path``, as is and
    with spans widened; returns the changes compared."""
    t = mmtrace.open(path)
    ch = t.changes()
    assert structure.write_sequences(t, ch) == write_sequences_rows(t, ch)
    wide = ch.copy()
    ts, te = wide["ts"].to_numpy(np.int64), wide["ts_end"].to_numpy(np.int64)
    span = max(1, int((te - ts).max()) if len(ch) else 1)
    grow = np.arange(len(ch)) % 3 * span * 50
    wide["ts_end"] = te + grow
    wide["ts"] = ts - grow // 7
    saved = structure._SPAN_VEC
    try:
        for limit in (saved, 3):
            structure._SPAN_VEC = limit
            assert structure.write_sequences(t, wide) == write_sequences_rows(t, wide)
    finally:
        structure._SPAN_VEC = saved
    assert write_sequences_rows(t, ch.iloc[:0]) == structure.write_sequences(t, ch.iloc[:0]) == []
    return len(ch)
