"""Splits and merges of VMAs, found from the rebuilt trees, with their evidence.

A *split* is a point that was strictly inside one VMA before a change and is
a VMA boundary (or the edge of a hole) after it: each is one ``__split_vma``
in mm/vma.c (mprotect of a sub-range, munmap of a hole or of a tail, mremap
shrink, MAP_FIXED over part of a mapping).  A *merge* is a boundary between
two adjacent VMAs before a change that lies strictly inside one VMA after it
(``vma_merge_existing_range``); a *new-range merge* is a new mapping taken
into an existing neighbour instead of getting a VMA of its own
(``vma_merge_new_range`` / ``vma_expand``).  Counting points, not changes,
makes a two-sided mprotect two splits, as the kernel does.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pandas as pd

from ..events.flags import perms
from ..model.names import comm_at

__all__ = ["split_merge_points", "split_merge_table", "split_merge_counts", "splits", "merges", "write_sequences"]

_OUT_COLUMNS = [
    "ts", "ts_end", "pid", "tid", "comm", "cause", "syscall", "arg0", "arg1", "arg2", "arg3", "ret",
    "kind", "count", "at", "before", "after", "writes",
]


def _inside(vmas: list[tuple], p: int, starts: list[int] | None = None) -> bool:
    """Is ``p`` strictly inside one of ``vmas`` (sorted (start, end, ...); ``starts``: their starts)?"""
    if starts is None:
        starts = [v[0] for v in vmas]
    i = bisect_right(starts, p) - 1
    return i >= 0 and vmas[i][0] < p < vmas[i][1]


def split_merge_points(
    before: list[tuple], after: list[tuple], *, new_ranges: bool = False
) -> tuple[list[int], list[int], list[int]]:
    """(split points, merge points, new-range merge points) of one change.

    ``before``/``after``: the VMAs that went away / appeared, as
    (start, end, vma pointer, vm_flags) tuples (``changes()`` columns
    ``before_vmas``, ``after_vmas``).  ``new_ranges``: the change maps new
    ground (mmap, brk), so a VMA that grew is a new range merged into it.
    """
    if not before or not after:
        return [], [], []  # a pure map or unmap splits and merges nothing
    if len(before) > 1:
        before = sorted(before)
    if len(after) > 1:
        after = sorted(after)
    bstarts = [v[0] for v in before]
    after_edges = sorted({x for v in after for x in (v[0], v[1])})
    split = [p for p in after_edges if _inside(before, p, bstarts)]
    if len(before) > 1:
        joints = [before[i][1] for i in range(len(before) - 1) if before[i][1] == before[i + 1][0]]
        astarts = [v[0] for v in after]
        merge = [p for p in joints if _inside(after, p, astarts)]
    else:
        merge = []
    new_range = []
    if new_ranges:
        by_ptr = {b[2]: b for b in before if b[2]}
        for v in after:
            b = by_ptr.get(v[2])
            if b is not None and v[0] <= b[0] and b[1] <= v[1] and (v[0], v[1]) != (b[0], b[1]):
                new_range.append(b[0] if v[0] < b[0] else b[1])
    return split, merge, new_range


def write_sequences(trace, ch: pd.DataFrame) -> list[str]:
    """For each change row, the maple tree writes that showed it, as text.

    ``fn [index, last] = val`` per store on the change's tree between its
    first and last event, by the same thread (kernel paths: any thread).
    """
    tw = trace.raw_events("tree_write")
    if len(tw) == 0 or len(ch) == 0:
        return [""] * len(ch)
    tw = tw.sort_values("ts", kind="stable")
    ts = tw["ts"].to_numpy(np.int64)
    # each change's [ts, ts_end] as index ranges into the sorted writes, all at once
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


def _fmt_vmas(vmas: list[tuple]) -> list[dict]:
    return [{"start": int(s), "end": int(e), "perms": perms(int(f)), "vm_flags": int(f), "vma": int(p)}
            for s, e, p, f in vmas]


_WHOLE_TREE = ("fork_copy", "exec_setup", "exit")  # trees copied, built or torn down: no splits or merges


def split_merge_table(ch: pd.DataFrame) -> list[tuple[int, list[int], list[int], list[int]]]:
    """(row position in ``ch``, split points, merge points, new-range merge
    points) of each change of ``ch`` that has any: the one pass over the
    changes that :func:`split_merge_counts`, :func:`splits` and
    :func:`merges` share (``mmtrace.Trace`` computes it once)."""
    out = []
    skip = set(_WHOLE_TREE)
    # a pure map or unmap (nothing before or after) splits and merges nothing: skip those rows at C speed
    cand = np.flatnonzero((ch["n_before"].to_numpy() > 0) & (ch["n_after"].to_numpy() > 0)) if len(ch) else []
    kinds, scs = ch["kind"].to_numpy(), ch["syscall"].to_numpy()
    bvs, avs = ch["before_vmas"].to_numpy(), ch["after_vmas"].to_numpy()
    for i in cand.tolist() if len(cand) else ():
        kind, syscall, before, after = kinds[i], scs[i], bvs[i], avs[i]
        if kind in skip or not before or not after:
            continue
        sp, mg, nr = split_merge_points(before, after, new_ranges=syscall in ("mmap", "brk"))
        if sp or mg or nr:
            out.append((i, sp, mg, nr))
    return out


def _found(trace, ch: pd.DataFrame, what: str, points=None) -> pd.DataFrame:
    if points is None:
        points = split_merge_table(ch)
    picked = []
    for i, sp, mg, nr in points:
        pts, kind = (sp, "split") if what == "split" else ((mg, "merge") if mg else (nr, "new_range_merge"))
        if pts:
            picked.append((i, kind, pts))
    if not picked:
        return pd.DataFrame(columns=_OUT_COLUMNS)
    src = ch.iloc[[i for i, _, _ in picked]].reset_index(drop=True)
    df = src[["ts", "ts_end", "pid", "tid", "cause", "syscall", "arg0", "arg1", "arg2", "arg3", "ret"]].copy()
    df["kind"] = [k for _, k, _ in picked]
    df["count"] = [len(p) for _, _, p in picked]
    df["at"] = [[int(x) for x in p] for _, _, p in picked]
    df["before"] = [_fmt_vmas(v) for v in src["before_vmas"].tolist()]
    df["after"] = [_fmt_vmas(v) for v in src["after_vmas"].tolist()]
    df["writes"] = write_sequences(trace, src)
    df["comm"] = comm_at(trace, df["pid"], df["ts"])
    return df[_OUT_COLUMNS]


def split_merge_counts(ch: pd.DataFrame, points=None) -> pd.DataFrame:
    """Split and merge points per process: columns ``pid``, ``splits``, ``merges``
    (merges include new-range merges).  The cheap path behind ``processes()``.
    ``points``: :func:`split_merge_table` of ``ch``, if already made."""
    if points is None:
        points = split_merge_table(ch)
    pids = ch["pid"].tolist()
    counts: dict[int, list[int]] = {}
    for i, sp, mg, nr in points:
        c = counts.setdefault(pids[i], [0, 0])
        c[0] += len(sp)
        c[1] += len(mg) if mg else len(nr)
    return pd.DataFrame([(p, a, b) for p, (a, b) in counts.items()], columns=["pid", "splits", "merges"])


def splits(trace, ch: pd.DataFrame | None = None, points=None) -> pd.DataFrame:
    """One row per change that split VMAs.

    Columns: ``ts``, ``ts_end``, ``pid``, ``tid``, ``comm``, ``cause``
    (syscall or kernel path), ``syscall``, ``arg0``..``arg3``, ``ret``,
    ``kind`` ("split"), ``count`` (split points: one per ``__split_vma``),
    ``at`` (the addresses split at), ``before``/``after`` (lists of
    {start, end, perms, vm_flags, vma} of the VMAs that went away /
    appeared), ``writes`` (the maple tree writes that showed it).
    ``points``: :func:`split_merge_table` of ``ch``, if already made.
    """
    return _found(trace, trace.changes() if ch is None else ch, "split", points)


def merges(trace, ch: pd.DataFrame | None = None, points=None) -> pd.DataFrame:
    """One row per change that merged VMAs; columns as :func:`splits`, with
    ``kind`` "merge" (adjacent VMAs joined) or "new_range_merge" (a new
    range taken into an existing neighbour)."""
    return _found(trace, trace.changes() if ch is None else ch, "merge", points)
