"""Vectorised preprocessing: every event the replay needs, merged into one ts-ordered stream.

The replay (:mod:`mmtrace.model.replay`) walks a single Python list of
tuples; everything that can be decided per event without the tree state is
decided here with numpy: which tree writes matter, duplicates of one store,
the syscall enclosing a write.

Record layouts (first field is the record type):

- ``(R_WRITE, ts, tree, lo, hi, val, flags, tid, tgid, cur_tree, vm_flags, pgbase, dev, ino, cause)``:
  a maple-tree store of ``val`` (0 = clear) over [lo, hi); ``cur_tree`` is
  ``&current->mm->mm_mt`` of the writer; ``cause`` is the row of the enclosing
  syscall in ``Stream.sc`` or -1.
- ``(R_SYSCALL, ts, row)``: a syscall's exit; ``row`` indexes ``Stream.sc``.
- ``(R_PROC, ts, row)``: fork/exec/exit; ``row`` indexes ``Stream.proc``.
- ``(R_EXIT_MMAP, ts, mt)``: an mm's tree torn down.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..events.schema import TW_CURRENT_MM, TW_VAL_IS_VMA

__all__ = ["Stream", "build_stream", "no_gc", "R_WRITE", "R_SYSCALL", "R_PROC", "R_EXIT_MMAP", "mm_mt_offset"]

R_WRITE, R_SYSCALL, R_PROC, R_EXIT_MMAP = 0, 1, 2, 3

# ma_write events that are not stores: mas_is_span_wr is a probe ("is this a
# spanning write?") that reports the range and value of a store that is
# reported again by the store itself.
_NOT_STORES = ("mas_is_span_wr",)

# Syscalls whose effect is not fully in their stores (see replay.Engine._on_syscall).
CORRECTING = ("munmap", "mprotect", "pkey_mprotect", "mremap", "brk")


def mm_mt_offset(metadata: dict) -> int:
    """offsetof(struct mm_struct, mm_mt) on the traced kernel (BTF, recorded in the trace)."""
    off = ((metadata.get("probe_plan") or {}).get("offsets") or {}).get("mm_struct.mm_mt")
    return int(off) if off is not None else 64


@dataclass
class Stream:
    """The merged stream and the per-kind side tables its records index.

    ``sc``: syscall table as a dict of Python lists (columns ``syscall``,
    ``ts``, ``ts_enter``, ``tgid``, ``tid``, ``arg0``..``arg5``, ``ret``,
    ``tree`` (= mm + offsetof(mm_mt), 0 when mm is 0), ``brk_enter``,
    ``brk_exit``); ``proc``: proc table the same way (``what``, ``ts``,
    ``tgid``, ``tid``, ``pid``, ``child_tgid``, ``tree``, ``flags``, ``comm``,
    ``filename``).  ``forks``/``execs``: tree -> sorted ts of the fork/exec
    events that name it (a fork child's tree is written before its fork
    event fires).  ``n_tree_write``: tree_write events in the trace (before
    filtering).
    """

    records: list[tuple]
    ts: np.ndarray
    sc: dict[str, list]
    proc: dict[str, list]
    forks: dict[int, list[int]] = field(default_factory=dict)
    execs: dict[int, list[int]] = field(default_factory=dict)
    n_tree_write: int = 0
    n_writes_kept: int = 0
    mt_off: int = 64


def _col(df: pd.DataFrame, name: str, dtype=np.uint64) -> np.ndarray:
    return df[name].to_numpy(dtype=dtype) if len(df) else np.zeros(0, dtype=dtype)


def _writes(tw: pd.DataFrame, mm_trees: set[int], mt_off: int) -> dict[str, np.ndarray]:
    """The tree writes that change an mm's tree, one per store, as numpy columns."""
    if len(tw) == 0:
        return {}
    op = tw["op"].to_numpy()
    fn = tw["fn"]
    keep = op == 0
    if hasattr(fn, "cat"):
        bad = np.isin(fn.cat.codes.to_numpy(), [i for i, c in enumerate(fn.cat.categories) if c in _NOT_STORES])
    else:
        bad = fn.isin(_NOT_STORES).to_numpy()
    keep &= ~bad
    flags = tw["flags"].to_numpy().astype(np.int64)
    tree = tw["tree"].to_numpy(dtype=np.uint64)
    # A tree is an mm's when some store put one of that mm's VMAs in it, when
    # it is current->mm's, or when a fork/exec/exit event names it.  munmap's
    # detach tree and tmpfs/IRQ trees are none of these.
    ident = (flags & (TW_VAL_IS_VMA | TW_CURRENT_MM)) != 0
    known = np.unique(tree[ident])
    if mm_trees:
        known = np.union1d(known, np.fromiter(mm_trees, dtype=np.uint64, count=len(mm_trees)))
    keep &= np.isin(tree, known)
    idx = np.flatnonzero(keep)
    c = {
        "ts": tw["ts"].to_numpy(dtype=np.int64)[idx],
        "tree": tree[idx],
        "index": tw["index"].to_numpy(dtype=np.uint64)[idx],
        "last": tw["last"].to_numpy(dtype=np.uint64)[idx],
        "val": tw["val"].to_numpy(dtype=np.uint64)[idx],
        "flags": flags[idx],
        "tid": tw["tid"].to_numpy(dtype=np.int64)[idx],
        "tgid": tw["tgid"].to_numpy(dtype=np.int64)[idx],
        "mm": tw["mm"].to_numpy(dtype=np.uint64)[idx],
        "vm_start": tw["vm_start"].to_numpy(dtype=np.uint64)[idx],
        "vm_flags": tw["vm_flags"].to_numpy(dtype=np.uint64)[idx],
        "vm_pgoff": tw["vm_pgoff"].to_numpy(dtype=np.uint64)[idx],
        "dev": tw["dev"].to_numpy(dtype=np.int64)[idx],
        "ino": tw["ino"].to_numpy(dtype=np.uint64)[idx],
    }
    # One store fires an outer event and an inner one (mas_store_prealloc then
    # mas_wr_node_store) with the same range and value on the same task:
    # replaying both is idempotent, so drop the inner one.  Only an inner
    # (mas_wr_*) right after its outer: two outer stores of the same range
    # and (reused) pointer can have a silent clear between them.
    if hasattr(fn, "cat"):
        inner_codes = [i for i, c in enumerate(fn.cat.categories) if str(c).startswith("mas_wr_")]
        c["inner"] = np.isin(fn.cat.codes.to_numpy()[idx], inner_codes)
    else:
        c["inner"] = fn.astype(str).str.startswith("mas_wr_").to_numpy()[idx]
    n = len(idx)
    if n > 1:
        order = np.lexsort((c["ts"], c["tid"]))
        same = np.zeros(n, dtype=bool)
        a, b = order[1:], order[:-1]
        same[a] = (
            c["inner"][a]
            & ~c["inner"][b]
            & (c["tid"][a] == c["tid"][b])
            & (c["tree"][a] == c["tree"][b])
            & (c["index"][a] == c["index"][b])
            & (c["last"][a] == c["last"][b])
            & (c["val"][a] == c["val"][b])
        )
        if same.any():
            c = {k: v[~same] for k, v in c.items()}
    return c


def _enclosing_syscall(ts: np.ndarray, tid: np.ndarray, sc: pd.DataFrame) -> np.ndarray:
    """Row in ``sc`` of the syscall of the same thread whose [ts_enter, ts] holds each event; -1 if none."""
    out = np.full(len(ts), -1, dtype=np.int64)
    if len(sc) == 0 or len(ts) == 0:
        return out
    s_tid = sc["tid"].to_numpy(dtype=np.int64)
    s_in = sc["ts_enter"].to_numpy(dtype=np.int64)
    s_out = sc["ts"].to_numpy(dtype=np.int64)
    # Sort syscalls by (tid, ts_enter); a composite float key would lose
    # precision, so search per thread (threads are few).
    for t in np.unique(tid):
        m = np.flatnonzero(tid == t)
        rows = np.flatnonzero(s_tid == t)
        if len(rows) == 0:
            continue
        rows = rows[np.argsort(s_in[rows], kind="stable")]
        k = np.searchsorted(s_in[rows], ts[m], side="right") - 1
        ok = k >= 0
        kk = np.where(ok, k, 0)
        ok &= ts[m] <= s_out[rows[kk]]
        out[m[ok]] = rows[kk[ok]]
    return out


@contextmanager
def no_gc():
    """Pause the cyclic GC: building millions of tuples (none cyclic) would
    trigger a full collection every few thousand allocations."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_stream(trace, *, with_causes: bool = False) -> Stream:
    """See :func:`_build_stream`; runs with the cyclic GC paused."""
    with no_gc():
        return _build_stream(trace, with_causes=with_causes)


def _build_stream(trace, *, with_causes: bool = False) -> Stream:
    """Merge the trace's tree writes, syscalls, proc and exit_mmap events by ts.

    ``trace`` is a :class:`mmtrace.trace.TraceFile` (or anything with
    ``raw_events(kind)``, ``kinds`` and ``metadata``).  With ``with_causes``
    each write carries the row of its enclosing syscall (for
    :func:`mmtrace.model.changes`); otherwise ``cause`` is -1.
    """
    mt_off = mm_mt_offset(trace.metadata)
    kinds = set(trace.kinds)

    def raw(kind: str) -> pd.DataFrame:
        return trace.raw_events(kind) if kind in kinds else pd.DataFrame()

    tw, sc, pr, em = raw("tree_write"), raw("syscall"), raw("proc"), raw("exit_mmap")

    # -- proc ------------------------------------------------------------
    proc: dict[str, list] = {}
    forks: dict[int, list[int]] = {}
    execs: dict[int, list[int]] = {}
    mm_trees: set[int] = set()
    if len(pr):
        for cname in ("what", "ts", "tgid", "tid", "pid", "child_tgid", "tree", "flags", "comm", "filename"):
            proc[cname] = pr[cname].astype(object if cname in ("what", "comm", "filename") else np.int64).tolist() if cname != "tree" else pr["tree"].to_numpy(dtype=np.uint64).tolist()
        proc["what"] = [str(w) for w in proc["what"]]
        for w, ts, tree, fl in zip(proc["what"], proc["ts"], proc["tree"], proc["flags"]):
            if tree:
                mm_trees.add(tree)
                if w == "fork" and not fl & 0x3:  # a new mm (not a thread, not CLONE_VM)
                    forks.setdefault(tree, []).append(ts)
                elif w == "exec":
                    execs.setdefault(tree, []).append(ts)
    if len(em):
        mm_trees.update(em["mt"].to_numpy(dtype=np.uint64).tolist())

    # -- syscalls --------------------------------------------------------
    if len(sc) and not with_causes:
        # Only syscalls whose exit corrects the tree need a record (the
        # others' changes are all in their stores): fewer rows to convert.
        sc = sc[sc["syscall"].isin(CORRECTING).to_numpy()].reset_index(drop=True)
    scd: dict[str, list] = {}
    if len(sc):
        scd["syscall"] = [str(s) for s in sc["syscall"].tolist()]
        for cname in ("ts", "ts_enter", "tgid", "tid", "ret"):
            scd[cname] = sc[cname].to_numpy(dtype=np.int64).tolist()
        for cname in ("arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "brk_enter", "brk_exit"):
            scd[cname] = sc[cname].to_numpy(dtype=np.uint64).tolist()
        mm = sc["mm"].to_numpy(dtype=np.uint64)
        scd["tree"] = np.where(mm != 0, mm + np.uint64(mt_off), np.uint64(0)).tolist()

    # -- writes ----------------------------------------------------------
    w = _writes(tw, mm_trees, mt_off)
    nw = len(w.get("ts", ()))
    parts_ts = []
    parts_recs: list[list[tuple]] = []
    if nw:
        val = w["val"]
        isvma = (w["flags"] & TW_VAL_IS_VMA) != 0
        val = np.where(isvma, val, np.uint64(0))  # XA_ZERO_ENTRY & co: a clear
        # last may be ULONG_MAX (a clear to the top): user addresses are far
        # below 2**63, so capping there keeps int64 (fast to convert).
        hi = np.minimum(w["last"], np.uint64(2**63 - 2)).astype(np.int64) + 1
        lo = np.minimum(w["index"], np.uint64(2**63 - 2)).astype(np.int64)
        pgbase = (w["vm_pgoff"].astype(np.int64) - (w["vm_start"] >> np.uint64(12)).astype(np.int64))
        cur = np.where(w["mm"] != 0, w["mm"] + np.uint64(mt_off), np.uint64(0))
        cause = _enclosing_syscall(w["ts"], w["tid"], sc) if with_causes else np.full(nw, -1, np.int64)
        recs = list(
            zip(
                [R_WRITE] * nw,
                w["ts"].tolist(),
                w["tree"].tolist(),
                lo.tolist(),
                hi.tolist(),
                val.tolist(),
                w["flags"].tolist(),
                w["tid"].tolist(),
                w["tgid"].tolist(),
                cur.tolist(),
                w["vm_flags"].tolist(),
                pgbase.tolist(),
                w["dev"].tolist(),
                w["ino"].tolist(),
                cause.tolist(),
            )
        )
        parts_ts.append(w["ts"])
        parts_recs.append(recs)
    if len(sc):
        rows = np.flatnonzero(sc["syscall"].isin(CORRECTING).to_numpy())
        sts = np.asarray(scd["ts"], dtype=np.int64)[rows]
        parts_ts.append(sts)
        parts_recs.append(list(zip([R_SYSCALL] * len(rows), sts.tolist(), rows.tolist())))
    if len(pr):
        n = len(pr)
        parts_ts.append(np.asarray(proc["ts"], dtype=np.int64))
        parts_recs.append(list(zip([R_PROC] * n, proc["ts"], range(n))))
    if len(em):
        n = len(em)
        ets = em["ts"].to_numpy(dtype=np.int64)
        parts_ts.append(ets)
        parts_recs.append(list(zip([R_EXIT_MMAP] * n, ets.tolist(), em["mt"].to_numpy(dtype=np.uint64).tolist())))

    if parts_ts:
        all_ts = np.concatenate(parts_ts)
        typ = np.concatenate([np.full(len(p), k, dtype=np.int8) for k, p in enumerate(parts_ts)])
        # ts order; on a tie, writes before syscall exits before proc events
        # (a syscall's stores precede its exit; fork's stores precede its event).
        order = np.lexsort((typ, all_ts))
        flat: list[tuple] = []
        for p in parts_recs:
            flat.extend(p)
        records = [flat[k] for k in order.tolist()]
        ts_sorted = all_ts[order]
    else:
        records, ts_sorted = [], np.zeros(0, dtype=np.int64)
    return Stream(
        records=records,
        ts=ts_sorted,
        sc=scd,
        proc=proc,
        forks=forks,
        execs=execs,
        n_tree_write=len(tw),
        n_writes_kept=nw,
        mt_off=mt_off,
    )
