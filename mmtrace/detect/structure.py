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

import numpy as np
import pandas as pd

from ..model.names import comm_at

__all__ = ["split_merge_points", "split_merge_table", "split_merge_counts", "splits", "merges", "write_sequences",
           "vma_dicts"]

_OUT_COLUMNS = [
    "ts", "ts_end", "pid", "tid", "comm", "cause", "syscall", "arg0", "arg1", "arg2", "arg3", "ret",
    "kind", "count", "at", "before", "after", "writes",
]


def _inside(qr: np.ndarray, qx: np.ndarray, vr: np.ndarray, vs: np.ndarray, ve: np.ndarray) -> np.ndarray:
    """Is each point ``qx`` (of change ``qr``) strictly inside one of that change's
    VMAs ``[vs, ve)`` (``vr``: their change; sorted by (vr, vs))?  One sort of
    points and VMA starts together: a point's VMA is the last start at or below it."""
    nv, nq = len(vr), len(qr)
    if nq == 0 or nv == 0:
        return np.zeros(nq, bool)
    typ = np.concatenate([np.zeros(nv, np.int8), np.ones(nq, np.int8)])
    o = np.lexsort((typ, np.concatenate([vs, qx]), np.concatenate([vr, qr])))
    isq = typ[o] == 1
    last = np.maximum.accumulate(np.where(isq, -1, o))  # VMAs come in (vr, vs) order: their index grows
    f, q = last[isq], o[isq] - nv
    g = np.maximum(f, 0)
    res = (f >= 0) & (vr[g] == qr[q]) & (vs[g] < qx[q]) & (qx[q] < ve[g])
    out = np.empty(nq, bool)
    out[q] = res
    return out


def _point_arrays(before: list, after: list, new_ranges) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(change, point, what) of every split (what 0), merge (1) and new-range
    merge (2) point of the changes whose VMAs went away / appeared are
    ``before[k]`` / ``after[k]`` ((start, end, vma pointer, vm_flags) tuples),
    ``new_ranges[k]``: change k maps new ground.  Sorted by change, then what,
    then as :func:`split_merge_points` lists them.

    Split: an edge of an after VMA strictly inside a before VMA
    (``__split_vma``); merge: a joint of two adjacent before VMAs strictly
    inside an after VMA; new-range merge (new ground only, mmap/brk): a
    before VMA that grew, same pointer, its moved edge."""
    from ..model.tables import flat_vmas

    bo, B = flat_vmas(before)
    ao, A = flat_vmas(after)
    n = len(before)
    br = np.repeat(np.arange(n), np.diff(bo))
    ar = np.repeat(np.arange(n), np.diff(ao))
    # a pure map or unmap splits and merges nothing
    has = (np.diff(bo) > 0) & (np.diff(ao) > 0)
    kb, ka = has[br], has[ar]
    br, B, ar, A = br[kb], B[kb], ar[ka], A[ka]
    ob = np.lexsort((B[:, 3], B[:, 2], B[:, 1], B[:, 0], br))
    oa = np.lexsort((A[:, 3], A[:, 2], A[:, 1], A[:, 0], ar))
    br, B, ar, A = br[ob], B[ob], ar[oa], A[oa]
    out_r, out_x, out_w = [], [], []
    # splits: the after edges, once each
    er = np.concatenate([ar, ar])
    ex = np.concatenate([A[:, 0], A[:, 1]])
    o = np.lexsort((ex, er))
    er, ex = er[o], ex[o]
    u = np.ones(len(er), bool)
    u[1:] = (er[1:] != er[:-1]) | (ex[1:] != ex[:-1])
    er, ex = er[u], ex[u]
    m = _inside(er, ex, br, B[:, 0], B[:, 1])
    out_r.append(er[m]), out_x.append(ex[m]), out_w.append(np.zeros(int(m.sum()), np.int8))
    # merges: joints of adjacent before VMAs
    j = np.flatnonzero((br[1:] == br[:-1]) & (B[1:, 0] == B[:-1, 1]))
    jr, jx = br[j], B[j, 1]
    m = _inside(jr, jx, ar, A[:, 0], A[:, 1])
    out_r.append(jr[m]), out_x.append(jx[m]), out_w.append(np.ones(int(m.sum()), np.int8))
    # new-range merges: per change, the last before VMA of each pointer, matched by pointer
    nr = np.asarray(new_ranges, bool)
    sel = nr[br] & (B[:, 2] != 0)
    pr, P = br[sel], B[sel]
    if len(pr) and len(ar):
        o = np.lexsort((np.arange(len(pr)), P[:, 2], pr))
        pr, P = pr[o], P[o]
        lastp = np.ones(len(pr), bool)
        lastp[:-1] = (pr[1:] != pr[:-1]) | (P[1:, 2] != P[:-1, 2])
        pr, P = pr[lastp], P[lastp]
        ai = np.flatnonzero(nr[ar])
        qr, Q = ar[ai], A[ai]
        typ = np.concatenate([np.zeros(len(pr), np.int8), np.ones(len(qr), np.int8)])
        o = np.lexsort((typ, np.concatenate([P[:, 2], Q[:, 2]]), np.concatenate([pr, qr])))
        isq = typ[o] == 1
        last = np.maximum.accumulate(np.where(isq, -1, o))
        f, q = last[isq], o[isq] - len(pr)
        g = np.maximum(f, 0)
        bs, be, vs, ve = P[g, 0], P[g, 1], Q[q, 0], Q[q, 1]
        ok = (f >= 0) & (pr[g] == qr[q]) & (P[g, 2] == Q[q, 2]) & (vs <= bs) & (be <= ve) & ((vs != bs) | (ve != be))
        q, bs, be, vs = q[ok], bs[ok], be[ok], vs[ok]
        o = np.argsort(q, kind="stable")  # in after order
        q, bs, be, vs = q[o], bs[o], be[o], vs[o]
        out_r.append(qr[q]), out_x.append(np.where(vs < bs, bs, be)), out_w.append(np.full(len(q), 2, np.int8))
    r, x, w = (np.concatenate(v) for v in (out_r, out_x, out_w))
    o = np.lexsort((w, r))  # stable: each kind keeps its own order
    return r[o], x[o], w[o]


def split_merge_points(
    before: list[tuple], after: list[tuple], *, new_ranges: bool = False
) -> tuple[list[int], list[int], list[int]]:
    """(split points, merge points, new-range merge points) of one change.

    ``before``/``after``: the VMAs that went away / appeared, as
    (start, end, vma pointer, vm_flags) tuples (``changes()`` columns
    ``before_vmas``, ``after_vmas``).  ``new_ranges``: the change maps new
    ground (mmap, brk), so a VMA that grew is a new range merged into it.
    (:func:`_point_arrays` for one change.)
    """
    _, x, w = _point_arrays([before], [after], [new_ranges])
    x, w = x.tolist(), w.tolist()
    return tuple([p for p, k in zip(x, w) if k == what] for what in (0, 1, 2))


_SHOWN = 32  # writes shown per change, then "; ... N more"
_SPAN_VEC = 4096  # changes spanning more writes than this are looked at one by one


def write_sequences(trace, ch: pd.DataFrame) -> list[str]:
    """For each change row, the maple tree writes that showed it, as text.

    ``fn [index, last] = val`` per store on the change's tree between its
    first and last event, by the same thread (kernel paths: any thread),
    the first 32 of them (then ``; ... N more``).  Columnar: the writes in
    each change's span are picked with numpy and their text made by Arrow
    kernels, joined per change.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..model.tables import hex_text

    tw = trace.raw_events("tree_write")
    if len(tw) == 0 or len(ch) == 0:
        return [""] * len(ch)
    tw = tw.sort_values("ts", kind="stable")
    ts = tw["ts"].to_numpy(np.int64)
    n = len(ch)
    # each change's [ts, ts_end] as index ranges into the sorted writes, all at once
    lo_ix = np.searchsorted(ts, ch["ts"].to_numpy(np.int64), side="left")
    hi_ix = np.searchsorted(ts, ch["ts_end"].to_numpy(np.int64), side="right")
    cnt = np.maximum(hi_ix - lo_ix, 0)
    tree = tw["tree"].to_numpy(np.uint64)
    tid = tw["tid"].to_numpy(np.int64)
    r_tree = ch["tree"].to_numpy(np.uint64)
    r_tid = ch["tid"].to_numpy(np.int64)
    by_tid = np.array([bool(x) for x in ch["syscall"].tolist()], dtype=bool)
    small = cnt <= _SPAN_VEC
    # (change, write) pairs of the small spans, in change then ts order
    rows = np.flatnonzero(small)
    c = cnt[rows]
    r = np.repeat(rows, c)
    start = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(c, out=start[1:])
    i = lo_ix[r] + (np.arange(len(r)) - np.repeat(start[:-1], c))
    for k in np.flatnonzero(~small).tolist():  # long spans: the pairs found one change at a time
        span = np.arange(lo_ix[k], hi_ix[k])
        m = (tree[span] == r_tree[k]) & (~by_tid[k] | (tid[span] == r_tid[k]))
        i = np.concatenate([i, span[m]])
        r = np.concatenate([r, np.full(int(m.sum()), k, np.int64)])
    if (~small).any():
        o = np.argsort(r, kind="stable")
        r, i = r[o], i[o]
    m = (tree[i] == r_tree[r]) & (~by_tid[r] | (tid[i] == r_tid[r]))
    r, i = r[m], i[m]
    sel = np.bincount(r, minlength=n)
    first = np.zeros(n + 1, np.int64)
    np.cumsum(sel, out=first[1:])
    keep = (np.arange(len(r)) - first[r]) < _SHOWN
    r, i = r[keep], i[keep]
    fn = tw["fn"]
    if isinstance(fn.dtype, pd.CategoricalDtype):
        codes = fn.cat.codes.to_numpy()
        names = [str(x) for x in fn.cat.categories.tolist()] + ["nan"]
        codes = np.where(codes < 0, len(names) - 1, codes)
    else:
        codes, uniq = pd.factorize(fn.astype(str))
        names = [str(x) for x in uniq]
    val = tw["val"].to_numpy(np.uint64)[i]
    text = pc.binary_join_element_wise(
        pa.array(names, type=pa.string()).take(pa.array(codes[i])), " [",
        hex_text(tw["index"].to_numpy(np.uint64)[i]), ", ", hex_text(tw["last"].to_numpy(np.uint64)[i]), "] = ",
        pc.if_else(pa.array(val != 0), hex_text(val), "NULL"), "")
    offs = np.zeros(n + 1, np.int32)
    np.cumsum(np.minimum(sel, _SHOWN), out=offs[1:])
    out = pc.binary_join(pa.ListArray.from_arrays(pa.array(offs), text), "; ").to_pylist()
    for k in np.flatnonzero(sel > _SHOWN).tolist():
        out[k] += f"; ... {int(sel[k]) - _SHOWN} more"
    return out


def vma_dicts(col) -> list[list[dict]]:
    """Each row's VMAs ((start, end, vma pointer, vm_flags) tuples) as
    {start, end, perms, vm_flags, vma} dicts; the numbers read and the perms
    made for the whole column at once."""
    from ..model.tables import flat_vmas
    from ..model.vmatree import perms_column

    offs, v = flat_vmas(col)
    st, en, ptr, fl = (v[:, k].tolist() for k in range(4))
    dicts = [{"start": s, "end": e, "perms": p, "vm_flags": f, "vma": q}
             for s, e, p, f, q in zip(st, en, perms_column(v[:, 3]).tolist(), fl, ptr)]
    o = offs.tolist()
    return [dicts[o[k]:o[k + 1]] for k in range(len(o) - 1)]


_WHOLE_TREE = ("fork_copy", "exec_setup", "exit")  # trees copied, built or torn down: no splits or merges


def _candidates(ch: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row positions, change, point, what) of :func:`_point_arrays` over the
    changes of ``ch`` that can split or merge (VMAs before and after; not a
    tree copied, built or torn down)."""
    if len(ch) == 0:
        z = np.zeros(0, np.int64)
        return z, z, z.astype(np.uint64), z.astype(np.int8)
    cand = np.flatnonzero((ch["n_before"].to_numpy() > 0) & (ch["n_after"].to_numpy() > 0)
                          & ~ch["kind"].isin(_WHOLE_TREE).to_numpy())
    new = ch["syscall"].isin(("mmap", "brk")).to_numpy()[cand]
    r, x, w = _point_arrays(ch["before_vmas"].to_numpy()[cand], ch["after_vmas"].to_numpy()[cand], new)
    return cand, r, x, w


def split_merge_table(ch: pd.DataFrame) -> list[tuple[int, list[int], list[int], list[int]]]:
    """(row position in ``ch``, split points, merge points, new-range merge
    points) of each change of ``ch`` that has any: the one pass over the
    changes that :func:`split_merge_counts`, :func:`splits` and
    :func:`merges` share (``mmtrace.Trace`` computes it once)."""
    cand, r, x, w = _candidates(ch)
    if len(r) == 0:
        return []
    n = len(cand)
    cuts = [np.searchsorted(r * 3 + w, np.arange(n * 3 + 1), "left").tolist()]
    c = cuts[0]
    xs = x.tolist()
    out = []
    for k in np.unique(r).tolist():
        a, b, d, e = c[3 * k], c[3 * k + 1], c[3 * k + 2], c[3 * k + 3]
        out.append((int(cand[k]), xs[a:b], xs[b:d], xs[d:e]))
    return out


def _found(trace, ch: pd.DataFrame, what: str, points=None, dicts: bool = True) -> pd.DataFrame:
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
    for side in ("before", "after"):
        v = src[f"{side}_vmas"].tolist()
        df[side] = vma_dicts(v) if dicts else v
    df["writes"] = write_sequences(trace, src)
    df["comm"] = comm_at(trace, df["pid"], df["ts"])
    return df[_OUT_COLUMNS]


def split_merge_counts(ch: pd.DataFrame, points=None) -> pd.DataFrame:
    """Split and merge points per process: columns ``pid``, ``splits``, ``merges``
    (merges include new-range merges: those of a change that merged no
    adjacent VMAs), one row per process with any, in order of its first.
    The cheap path behind ``processes()``: a groupby over the points of
    :func:`_point_arrays`.  ``points``: :func:`split_merge_table` of ``ch``,
    if already made."""
    pids = ch["pid"].to_numpy(np.int64)
    if points is not None:
        pos = np.array([p[0] for p in points], np.int64)
        sp = np.array([len(p[1]) for p in points], np.int64)
        mg = np.array([len(p[2]) if p[2] else len(p[3]) for p in points], np.int64)
    else:
        cand, r, _, w = _candidates(ch)
        n = len(cand)
        per = np.bincount(r * 3 + w, minlength=3 * n).reshape(n, 3) if n else np.zeros((0, 3), np.int64)
        anyp = per.sum(axis=1) > 0
        pos, per = cand[anyp], per[anyp]
        sp, mg = per[:, 0], np.where(per[:, 1] > 0, per[:, 1], per[:, 2])
    if len(pos) == 0:
        return pd.DataFrame([], columns=["pid", "splits", "merges"])
    df = pd.DataFrame({"pid": pids[pos], "splits": sp.astype(np.int64), "merges": mg.astype(np.int64)})
    return df.groupby("pid", sort=False, as_index=False).sum()


def splits(trace, ch: pd.DataFrame | None = None, points=None, *, dicts: bool = True) -> pd.DataFrame:
    """One row per change that split VMAs.

    Columns: ``ts``, ``ts_end``, ``pid``, ``tid``, ``comm``, ``cause``
    (syscall or kernel path), ``syscall``, ``arg0``..``arg3``, ``ret``,
    ``kind`` ("split"), ``count`` (split points: one per ``__split_vma``),
    ``at`` (the addresses split at), ``before``/``after`` (lists of
    {start, end, perms, vm_flags, vma} of the VMAs that went away /
    appeared), ``writes`` (the maple tree writes that showed it).
    ``points``: :func:`split_merge_table` of ``ch``, if already made.
    ``dicts`` False: ``before``/``after`` hold the (start, end, vma pointer,
    vm_flags) tuples of ``before_vmas``/``after_vmas`` instead (what
    :func:`vma_dicts` makes the dicts of; the report's CSV reads the numbers).
    """
    return _found(trace, trace.changes() if ch is None else ch, "split", points, dicts)


def merges(trace, ch: pd.DataFrame | None = None, points=None, *, dicts: bool = True) -> pd.DataFrame:
    """One row per change that merged VMAs; columns (and ``dicts``) as :func:`splits`, with
    ``kind`` "merge" (adjacent VMAs joined) or "new_range_merge" (a new
    range taken into an existing neighbour)."""
    return _found(trace, trace.changes() if ch is None else ch, "merge", points, dicts)
