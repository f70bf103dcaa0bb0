"""Vectorised preprocessing: the trace read in bounded, ts-ordered windows.

The replay (:mod:`mmtrace.model.replay`) is the only sequential part; it
walks one :class:`Window` at a time.  Everything that can be decided per
event without the tree state is decided here with numpy, per window: which
tree writes matter, duplicates of one store, the syscall enclosing a write.

Reading: each event kind's parts (``events/<kind>/part-NNNNNN.parquet``) are
read one at a time, only the needed columns, and handed out by ts bound
(:class:`mmtrace.trace.windows.KindReader`): window ``k`` holds every event with ``B[k-1] < ts <=
B[k]`` where the bounds are chosen every ``chunk`` tree writes.  Parts need
not be disjoint in ts: a part is read as soon as its minimum ts (Parquet
statistics) is within the bound.  proc and exit_mmap events (one per
fork/exec/exit) are read whole.  Memory is O(one part + one window + live
VMAs), not O(trace).

Record kinds in a window (``Window.kind``):

- ``K_STORE`` / ``K_CLEAR``: a maple-tree store of a VMA over [lo, hi) / a
  store of NULL or of a non-VMA entry (a clear); ``a`` is the index of the
  tree pointer in ``Window.uptr``.
- ``K_SYSCALL``: a (tree-correcting) syscall's exit; ``a`` is its row in the
  window's syscall table ``Window.sc``.
- ``K_PROC``: fork/exec/exit; ``a`` is the row in ``Source.proc``.
- ``K_EXIT_MMAP``: an mm's tree torn down; ``a`` is the row in ``Source.em_mt``.

On a ts tie: writes, then syscall exits, then proc events, then exit_mmap (a
syscall's stores precede its exit; fork's stores precede its event).

Syscall exits that provably change nothing are left out of a window (see
:func:`_noop_exits`: e.g. a munmap whose own last store cleared its range),
except with causes (``changes()`` is told of every exit).
"""

from __future__ import annotations

import copy
import gc
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..events.schema import TW_CURRENT_MM, TW_VAL_IS_VMA
from ..trace.kernelinfo import KernelInfo
from ..trace.windows import SIGNED as _SIGNED
from ..trace.windows import KindReader as _KindReader
from ..trace.windows import num as _num
from ..trace.windows import strings as _strings
from .rules import CORRECTING, corrections, visible_instants

__all__ = [
    "Source", "Window", "no_gc", "mm_mt_offset",
    "K_STORE", "K_CLEAR", "K_SYSCALL", "K_PROC", "K_EXIT_MMAP", "K_SC_CLEAR", "K_SC_PROT", "K_SC_WALK", "K_SC_SEAL",
]

K_STORE, K_CLEAR, K_SYSCALL, K_PROC, K_EXIT_MMAP = 0, 1, 2, 3, 4
# Syscall exits, with their correction precomputed by mmtrace.model.rules
# (``start``/``end``: the range): K_SYSCALL changes nothing (failed, or
# nothing to correct) but may adopt a tree; K_SC_CLEAR must leave [start,
# end) empty; K_SC_PROT sets the perms of [start, end) to arg2; K_SC_WALK:
# mprotect's VMA walk decided from the tree (Engine._protect_walk); K_SC_SEAL:
# [start, end) becomes VM_SEALED.
K_SC_CLEAR, K_SC_PROT, K_SC_WALK, K_SC_SEAL = 5, 6, 7, 8
_SC_KINDS = (K_SYSCALL, K_SC_CLEAR, K_SC_PROT, K_SC_WALK, K_SC_SEAL)

# ma_write events that are not stores: mas_is_span_wr is a probe ("is this a
# spanning write?") that reports the range and value of a store that is
# reported again by the store itself.
_NOT_STORES = ("mas_is_span_wr",)


_TW_COLS = ("ts", "tgid", "tid", "fn", "tree", "mm", "index", "last", "val", "vm_start", "vm_flags",
            "vm_pgoff", "ino", "dev", "op", "flags")
_SC_COLS = ("ts", "ts_enter", "tgid", "tid", "ret", "mm", "brk_enter", "brk_exit",
            "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "syscall")
_PROC_COLS = ("what", "ts", "tgid", "tid", "pid", "child_tgid", "tree", "flags", "comm", "filename")
_I64MAX = np.uint64(2**63 - 2)


def mm_mt_offset(metadata: dict) -> int:
    """offsetof(struct mm_struct, mm_mt) on the traced kernel (BTF, recorded in the trace);
    raises :class:`mmtrace.trace.kernelinfo.MissingKernelFact` when the trace lacks it."""
    return KernelInfo(metadata).mm_mt


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


def _decode_tw(getcol, n: int) -> dict[str, np.ndarray]:
    """Tree writes of one part that are stores: op 0, not a probe."""
    codes, names = _strings(getcol("fn"))
    op = _num(getcol("op"), "op")
    bad = [i for i, c in enumerate(names) if c in _NOT_STORES]
    keep = op == 0
    if bad:
        keep &= ~np.isin(codes, bad)
    inner_codes = [i for i, c in enumerate(names) if c.startswith("mas_wr_")]
    idx = None if keep.all() else np.flatnonzero(keep)
    out = {}
    for c in _TW_COLS:
        if c in ("fn", "op"):
            continue
        v = _num(getcol(c), c)
        out[c] = v if idx is None else v[idx]
    cc = codes if idx is None else codes[idx]
    out["inner"] = np.isin(cc, inner_codes) if inner_codes else np.zeros(len(cc), bool)
    return out


class _ScDecoder:
    """Syscalls of one part; names become codes into ``names`` (shared across parts)."""

    def __init__(self, only_correcting: bool, columns=_SC_COLS) -> None:
        self.only = only_correcting
        self.columns = tuple(columns)
        self.names: list[str] = list(CORRECTING)
        self.code: dict[str, int] = {n: i for i, n in enumerate(self.names)}

    def __call__(self, getcol, n: int) -> dict[str, np.ndarray]:
        codes, names = _strings(getcol("syscall"))
        remap = np.array([self._code(x) for x in names] or [0], dtype=np.int32)
        g = remap[codes] if len(codes) else np.zeros(0, np.int32)
        idx = np.flatnonzero(g < len(CORRECTING)) if self.only else None
        out = {"code": g if idx is None else g[idx]}
        for c in self.columns:
            if c == "syscall":
                continue
            v = _num(getcol(c), c)
            out[c] = v if idx is None else v[idx]
        return out

    def _code(self, name: str) -> int:
        k = self.code.get(name)
        if k is None:
            k = self.code[name] = len(self.names)
            self.names.append(name)
        return k


# -- windows ------------------------------------------------------------------
_W_COLS = ("val", "vm_flags", "pgbase", "dev", "ino", "tid", "tgid", "cur", "flags", "cause")


class _MergedColumns(dict):
    """The window's columns in replay order: ``kind``, ``a``, ``ts``, ``start``,
    ``end`` given; a write column (:data:`_W_COLS`) is scattered from write
    order (``w``, at positions ``wpos``) on first access, 0 for other records."""

    def __init__(self, cols: dict, w: dict | None, wpos: np.ndarray) -> None:
        super().__init__(cols)
        self.w = w
        self.wpos = wpos

    def __missing__(self, key: str) -> np.ndarray:
        if key not in _W_COLS:
            raise KeyError(key)
        n = len(self["kind"])
        if self.w is None:
            v = np.zeros(n, np.int64)
        else:
            src = self.w[key]
            v = np.zeros(n, src.dtype)
            v[self.wpos] = src
        self[key] = v
        return v

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


@dataclass
class Window:
    """One ts window of preprocessed records, in replay order (numpy columns).

    ``lo < ts <= hi`` for every record.  Per record: ``kind``, ``a`` (see
    the module doc), ``ts``; for writes ``start``/``end`` (the range),
    ``val``, ``vm_flags``, ``pgbase``, ``dev``, ``ino``, ``tid``, ``tgid``,
    ``cur`` (``&current->mm->mm_mt``), ``flags``, ``cause`` (row of the
    enclosing syscall in ``sc`` or -1).  ``uptr``: the tree pointers ``a``
    indexes; ``sc``: the window's syscall table (numpy columns).

    The write columns are kept in write order (``w``; write row ``r`` is
    record ``wpos[r]``) and scattered to replay order only when read from
    ``cols``.
    """

    lo: float
    hi: float
    n_tree_write: int
    cols: dict[str, np.ndarray]
    uptr: list[int]
    sc: dict[str, np.ndarray]
    sc_names: list[str]
    w: dict[str, np.ndarray] | None = None
    wpos: np.ndarray | None = None
    n_exits: int = 0

    def __len__(self) -> int:
        return len(self.cols["kind"])

    def stop_at(self, at: int) -> int:
        """Number of leading records with ts <= at."""
        return int(np.searchsorted(self.cols["ts"], np.int64(at), side="right"))

    def write_row(self, k: int) -> int:
        """The write row (in ``w``) of record ``k`` (a write)."""
        return int(np.searchsorted(self.wpos, k))

    def sc_lists(self) -> dict[str, list]:
        """The syscall table as Python lists (what the engine reads at exits),
        each column converted when first read."""
        return _LazyColumns(self.sc, self.sc_names)

    def lists(self, a: int = 0, b: int | None = None) -> tuple[list, list, list, list, list]:
        """(kind, a, start, end, value) lists of records a..b-1, for the fast loop.

        ``value`` is the VMA value tuple of a store (see
        :data:`mmtrace.model.vmatree.VAL_FIELDS`), None otherwise.
        """
        c = self.cols
        n = len(self)
        if b is None or b > n:
            b = n
        a = max(0, min(a, b))
        vals = [None] * (b - a)
        w = self.w
        if w is not None and b > a:
            wpos = self.wpos
            r0 = int(np.searchsorted(wpos, a)) if a else 0
            r1 = int(np.searchsorted(wpos, b)) if b < n else len(wpos)
            st = np.flatnonzero(w["val"][r0:r1] != 0)
            if len(st):
                ix = st + r0 if r0 else st
                tup = zip(w["val"][ix].tolist(), _tolist(w["vm_flags"][ix]), w["pgbase"][ix].tolist(),
                          _tolist(w["dev"][ix]), _tolist(w["ino"][ix]), w["ts"][ix].tolist(), _tolist(w["tid"][ix]))
                if len(st) == b - a:
                    vals = list(tup)
                else:
                    pos = wpos[ix]
                    if a:
                        pos = pos - a
                    for p, v in zip(pos.tolist(), tup):
                        vals[p] = v
        if a == 0 and b == n:
            return c["kind"].tolist(), c["a"].tolist(), c["start"].tolist(), c["end"].tolist(), vals
        return (c["kind"][a:b].tolist(), c["a"][a:b].tolist(), c["start"][a:b].tolist(), c["end"][a:b].tolist(),
                vals)

def _tolist(x: np.ndarray) -> list:
    """``x.tolist()``; one shared int when all are equal (fewer objects to make and free)."""
    if len(x) > 16:
        x0 = x[0]
        if (x == x0).all():
            return [int(x0)] * len(x)
    return x.tolist()


class _LazyColumns(dict):
    """name -> list, converted from numpy on first access (``syscall``: names from codes)."""

    def __init__(self, cols: dict[str, np.ndarray], names: list[str]) -> None:
        super().__init__()
        self.cols = cols
        self.names = names

    def __missing__(self, key: str) -> list:
        if key == "syscall":
            names = self.names
            v = [names[k] for k in self.cols["code"].tolist()] if "code" in self.cols else []
        else:
            v = self.cols[key].tolist()
        self[key] = v
        return v

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


class Source:
    """A trace opened for windowed reading (see the module doc).

    ``trace`` is a :class:`mmtrace.trace.TraceFile` (its parts are read
    directly) or anything with ``raw_events(kind)``, ``kinds`` and
    ``metadata``.  With ``with_causes`` every syscall is kept and each write
    carries the row of its enclosing syscall (for :func:`mmtrace.model.changes`):
    a window's syscall table then holds the calls that exit in it and, after
    them, those still open at its end (``Window.n_exits`` rows are exits);
    ``seq`` names a call across windows.

    ``proc``: the proc table as lists (``what``, ``ts``, ``tgid``, ``tid``,
    ``pid``, ``child_tgid``, ``tree``, ``flags``, ``comm``, ``filename``);
    ``forks``/``execs``: tree -> sorted ts of the fork/exec events naming it
    (a fork child's tree is written before its fork event fires); ``em_mt``:
    exit_mmap tree pointers.
    """

    def __init__(self, trace, *, with_causes: bool = False) -> None:
        self.trace = trace
        self.with_causes = with_causes
        self.tw = _KindReader(trace, "tree_write", _TW_COLS, _decode_tw)
        # arg4, arg5: only changes() shows them
        sc_cols = _SC_COLS if with_causes else tuple(c for c in _SC_COLS if c not in ("arg4", "arg5"))
        self.scd = _ScDecoder(only_correcting=not with_causes, columns=sc_cols)
        self.scr = _KindReader(trace, "syscall", sc_cols, self.scd)
        # when each call's changes became visible (rules.visible_instants): read by range
        self.lk = _KindReader(trace, "mmap_lock", ("ts", "tid"),
                              lambda g, n: {"ts": _num(g("ts"), "ts").astype(np.int64), "tid": _num(g("tid"), "tid")})
        # tree = mm + offsetof(mm_struct, mm_mt): needed as soon as there is a write or a syscall
        self.mt_off = mm_mt_offset(getattr(trace, "metadata", {}) or {}) if self.tw.parts or self.scr.parts else 0
        self._load_proc(trace)
        self.known: set[int] = set(self.mm_trees)
        self._known_arr = np.array(sorted(self.known), dtype=np.uint64)
        self.n_tree_write = 0

    def _load_proc(self, trace) -> None:
        def dec_proc(getcol, n):
            out = {}
            for c in ("what", "comm", "filename"):
                cc, nn = _strings(getcol(c))
                out[c] = np.array(nn + [""], dtype=object)[cc]
            for c in ("ts", "tgid", "tid", "pid", "child_tgid", "tree", "flags"):
                out[c] = _num(getcol(c), c)
            return out

        proc: dict[str, list] = {c: [] for c in _PROC_COLS}
        r = _KindReader(trace, "proc", ("what", "ts", "tgid", "tid", "pid", "child_tgid", "tree", "flags", "comm", "filename"),
                        dec_proc)
        rows = r.take(np.inf)
        if rows is not None:
            for c in _PROC_COLS:
                proc[c] = rows[c].tolist()
        self.proc = proc
        self.proc_ts = np.asarray(proc["ts"], dtype=np.int64)
        forks: dict[int, list[int]] = {}
        execs: dict[int, list[int]] = {}
        mm_trees: set[int] = set()
        for w, ts, tree, fl in zip(proc["what"], proc["ts"], proc["tree"], proc["flags"]):
            if tree:
                mm_trees.add(tree)
                if w == "fork" and not fl & 0x3:  # a new mm (not a thread, not CLONE_VM)
                    forks.setdefault(tree, []).append(ts)
                elif w == "exec":
                    execs.setdefault(tree, []).append(ts)
        er = _KindReader(trace, "exit_mmap", ("ts", "mt"), lambda g, n: {"ts": _num(g("ts"), "ts"), "mt": _num(g("mt"), "mt")})
        em = er.take(np.inf)
        self.em_ts = em["ts"] if em is not None else np.zeros(0, np.int64)
        self.em_mt = em["mt"].tolist() if em is not None else []
        mm_trees.update(self.em_mt)
        self.forks, self.execs, self.mm_trees = forks, execs, mm_trees

    # -- windows ---------------------------------------------------------------
    def windows(self, chunk: int):
        """Yield the trace as consecutive :class:`Window` s of about ``chunk`` tree writes."""
        # private reader states: several passes may be under way at once
        tw, scr = copy.copy(self.tw), copy.copy(self.scr)
        tw.reset()
        scr.reset()
        n_tw = 0
        lo = -np.inf
        chunk = max(1, int(chunk))
        while True:
            hi = tw.next_bound(chunk)
            sc = scr.take(hi)
            # with causes: the calls still open at hi enclose some of this window's writes
            pending = scr.open_at(hi) if hi != np.inf else None
            if self.with_causes:
                w = self._window(lo, hi, tw.take(hi), sc, pending)
            else:  # the calls open at hi: for a clear made before their exit (_clear_instants)
                w = self._window(lo, hi, tw.take(hi), sc, open_calls=pending)
            n_tw += w.n_tree_write
            yield w
            if hi == np.inf:
                self.n_tree_write = n_tw
                return
            lo = hi

    def window_between(self, lo: float, hi: float) -> Window:
        """The records with lo < ts <= hi (random access; for checkpointed queries)."""
        open_calls = None if self.with_causes or hi == np.inf else self._open_at(hi)
        return self._window(lo, hi, self.tw.between(lo, hi), self.scr.between(lo, hi), open_calls=open_calls)

    def _locks(self, sc: dict, corr: np.ndarray, kind: np.ndarray, open_calls: dict | None,
               hi: float) -> dict[str, np.ndarray] | None:
        """The ``mmap_lock`` records that may belong to the correcting calls of a window
        (exits ``corr`` and the calls still open at ``hi``): ts from their first entry to hi."""
        if not self.lk.parts:
            return None
        ent = sc["ts_enter"][corr][kind != K_SYSCALL]
        if open_calls is not None:
            ent = np.concatenate((ent, open_calls["ts_enter"]))
        if len(ent) == 0:
            return None
        return self.lk.between(int(ent.min()) - 1, hi)

    def _open_at(self, at: float) -> dict[str, np.ndarray] | None:
        """The syscalls open at ``at`` (``ts_enter <= at < ts``; random access)."""
        r = self.scr
        got = []
        for k, (src, _, pmax) in enumerate(r.parts):
            key = id(src) if isinstance(src, pd.DataFrame) else src
            if pmax <= at or r.enter_min.get(key, -np.inf) > at:
                continue
            cols = r.load_cached(k)
            if cols is None:
                continue
            m = (cols["ts"] > at) & (cols["ts_enter"] <= at)
            if m.any():
                got.append({c: v[m] for c, v in cols.items()})
        if not got:
            return None
        return got[0] if len(got) == 1 else {c: np.concatenate([g[c] for g in got]) for c in got[0]}

    def _window(self, lo: float, hi: float, tw: dict | None, sc: dict | None, pending: dict | None = None,
                open_calls: dict | None = None) -> Window:
        mt_off = np.uint64(self.mt_off)
        if sc is None:
            sc = {"code": np.zeros(0, np.int32), "seq": np.zeros(0, np.int64),
                  **{c: np.zeros(0, np.int64 if c in _SIGNED else np.uint64) for c in self.scd.columns if c != "syscall"}}
        n_exits = len(sc["ts"])
        if pending is not None:
            sc = {c: np.concatenate((v, pending[c])) for c, v in sc.items() if c in pending}
        sc_mm = sc["mm"]
        sc_tree = np.where(sc_mm != 0, sc_mm + mt_off, np.uint64(0))
        sc = dict(sc, tree=sc_tree)
        code = sc["code"]
        corr = np.flatnonzero(code[:n_exits] < len(CORRECTING)) if self.with_causes else np.arange(n_exits)

        # -- writes (ts order) --
        n_tw = 0 if tw is None else len(tw["ts"])
        w = _writes(tw, self, sc_tree[corr], sc) if n_tw else None
        nw = 0 if w is None else len(w["ts"])
        w_ts = w["ts"] if w is not None else np.zeros(0, np.int64)

        # -- syscall exits (ts order) --
        sc_kind, sc_lo, sc_hi = _corrections(sc, corr)
        p_a = int(np.searchsorted(self.proc_ts, lo, side="right")) if lo > -np.inf else 0
        p_b = int(np.searchsorted(self.proc_ts, hi, side="right")) if hi < np.inf else len(self.proc_ts)
        e_a = int(np.searchsorted(self.em_ts, lo, side="right")) if lo > -np.inf else 0
        e_b = int(np.searchsorted(self.em_ts, hi, side="right")) if hi < np.inf else len(self.em_ts)
        lk = self._locks(sc, corr, sc_kind, open_calls, hi)
        if open_calls is not None and (nw or lk is not None):
            # calls still open at hi whose silent changes became visible in
            # this window (their mmap_lock record, or after their last own
            # write here for a clear): their rows go after the exits
            o = dict(open_calls)
            o["tree"] = np.where(o["mm"] != 0, o["mm"] + mt_off, np.uint64(0))
            ocorr = np.arange(len(o["ts"]))
            okind, olo, ohi = _corrections(o, ocorr)
            if (okind != K_SYSCALL).any():
                inst = _placed_instants(w, o, ocorr, okind, o["ts"], lk)
                keep = np.flatnonzero((okind != K_SYSCALL) & (inst != o["ts"]) & (inst <= hi))
                if len(keep):
                    base = len(sc["ts"])
                    sc = {c: np.concatenate((v, o[c][keep])) for c, v in sc.items() if c in o}
                    corr = np.concatenate((corr, base + np.arange(len(keep))))
                    sc_kind = np.concatenate((sc_kind, okind[keep]))
                    sc_lo = np.concatenate((sc_lo, olo[keep]))
                    sc_hi = np.concatenate((sc_hi, ohi[keep]))
        s_ts = sc["ts"][corr]
        if (nw or lk is not None) and (sc_kind != K_SYSCALL).any():
            s_ts = _placed_instants(w, sc, corr, sc_kind, s_ts, lk)
            # the exit-time guard (Engine._guard) spares pieces other threads
            # wrote after "guard": for a correction placed before its exit,
            # that instant (what others wrote before it preceded it: the call
            # held mmap_lock from before its changes to that instant)
            placed = s_ts != sc["ts"][corr]
            if placed.any():
                guard = sc["ts_enter"].copy()
                guard[corr] = np.where(placed, s_ts, guard[corr])
                sc["guard"] = guard
                # and the write instant the corrected pieces get
                vis = sc["ts"].copy()
                vis[corr] = s_ts
                sc["vis"] = vis
        ns, npr, ne = len(corr), p_b - p_a, e_b - e_a
        # -- merge: on a ts tie writes, then syscall exits, then proc, then
        # exit_mmap; every part is ts-sorted, so a stable sort merges runs --
        parts = [w_ts, s_ts]
        if npr:
            parts.append(self.proc_ts[p_a:p_b])
        if ne:
            parts.append(self.em_ts[e_a:e_b])
        all_ts = np.concatenate(parts)
        if sum(len(x) > 0 for x in parts) > 1:
            order = np.argsort(all_ts, kind="stable")
        else:
            order = np.arange(len(all_ts))
        if nw and ns and not self.with_causes and npr == 0 and ne == 0:
            keep = _noop_exits(w, sc, corr, sc_kind, sc_lo, sc_hi, order, nw, ns)
            if keep is not None:
                m = np.ones(len(order), bool)
                m[nw:nw + ns] = keep
                order = order[m[order]]
        n = len(order)
        ts = all_ts[order]
        kind = np.concatenate((np.where(w["val"] != 0, K_STORE, K_CLEAR).astype(np.int8) if nw else np.zeros(0, np.int8),
                               sc_kind, np.full(npr, K_PROC, np.int8), np.full(ne, K_EXIT_MMAP, np.int8)))[order]
        a = np.concatenate((w["code"] if nw else np.zeros(0, np.int64), corr.astype(np.int64),
                            np.arange(p_a, p_b, dtype=np.int64), np.arange(e_a, e_b, dtype=np.int64)))[order]
        pad = np.zeros(npr + ne, np.int64)
        start = np.concatenate((w["start"] if nw else pad[:0], sc_lo, pad))[order]
        end = np.concatenate((w["end"] if nw else pad[:0], sc_hi, pad))[order]
        wpos = np.flatnonzero(order < nw)
        cols = _MergedColumns({"kind": kind, "a": a, "ts": ts, "start": start, "end": end}, w, wpos)
        return Window(lo, hi, n_tw, cols, [] if w is None else w["uptr"], sc, self.scd.names, w, wpos, n_exits)


def _noop_exits(w: dict, sc: dict, corr: np.ndarray, kind: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                order: np.ndarray, nw: int, ns: int) -> np.ndarray | None:
    """Which of the syscall exits ``corr`` (kinds/ranges from :func:`_corrections`)
    may change the state; None if all.  ``order``: the replay order of the
    window's writes (0..nw-1) and these exits (nw..nw+ns-1), nothing else (no
    proc or exit_mmap event in the window).  Decided from the window alone:

    - K_SYSCALL (nothing to correct, may adopt a tree): its tree is live, as an
      earlier write of the window that the engine applies (flags 0x3: a VMA
      or current's tree) made it so;
    - K_SC_CLEAR / K_SC_PROT: the thread's last write before the exit is
      inside the syscall (after ts_enter), to the same tree, applied (flags
      0x3), covers the range and is a clear / a store with the new perms.
      After it the range holds nothing / that value, but for pieces other
      threads wrote later, which the correction leaves alone (Engine._guard).
    """
    s_tid = sc["tid"][corr]
    s_ts = sc["ts"][corr]
    s_tree = sc["tree"][corr]
    w_ts, w_tid = w["ts"], w["tid"]
    # k: the last write of the same thread before each exit, in replay order
    t0 = w_tid[0]
    if (w_tid == t0).all() and (s_tid == t0).all():
        seq = order
    else:
        cat_tid = np.concatenate((w_tid.astype(np.int64), s_tid.astype(np.int64)))
        seq = order[np.argsort(cat_tid[order], kind="stable")]  # by thread, then replay order
    isw = seq < nw
    lastw = np.maximum.accumulate(np.where(isw, np.arange(len(seq)), -1))
    q = np.flatnonzero(~isw)
    p = lastw[q]
    ok_p = p >= 0
    k = np.full(ns, -1, np.int64)
    r = seq[q] - nw
    k[r[ok_p]] = seq[p[ok_p]]
    ok = k >= 0
    if seq is not order:
        ok[ok] = w_tid[k[ok]] == s_tid[ok]
    kk = np.where(ok, k, 0)
    uptr = w["uptr_arr"]
    w_code = w["code"]
    applied = (w["flags"] & 0x3) != 0
    same = ok & applied[kk] & (uptr[w_code[kk]] == s_tree) & (w_ts[kk] > sc["ts_enter"][corr])
    same &= (w["start"][kk] <= lo) & (w["end"][kk] >= hi)
    wval = w["val"][kk]
    noop = same & (kind == K_SC_CLEAR) & (wval == 0)
    prot = (kind == K_SC_PROT) & same & (wval != 0)
    if prot.any():
        prot &= (w["vm_flags"][kk] & np.uint64(0x7)) == (sc["arg2"][corr] & np.uint64(0x7))
        noop |= prot
    adopt = kind == K_SYSCALL
    if adopt.any():
        # first applied write of each tree in the window
        ca = np.flatnonzero(applied)
        first_ts = np.full(len(uptr), np.iinfo(np.int64).max, np.int64)
        if len(uptr) == 1:
            if len(ca):
                first_ts[0] = w_ts[ca[0]]
        else:
            codes, first = np.unique(w_code[ca], return_index=True)
            first_ts[codes] = w_ts[ca[first]]
        c = np.minimum(np.searchsorted(uptr, s_tree), len(uptr) - 1)
        adopt &= (uptr[c] == s_tree) & (first_ts[c] <= s_ts)
        noop |= adopt
    if not noop.any():
        return None
    return ~noop


def _placed_instants(w: dict | None, sc: dict, corr: np.ndarray, kind: np.ndarray, s_ts: np.ndarray,
                     lk: dict | None) -> np.ndarray:
    """When each correction (kind != K_SYSCALL) of the exits ``corr`` is applied: at the
    call's first ``mmap_lock`` record (:func:`mmtrace.model.rules.visible_instants`;
    ``lk``: those records, ``ts``/``tid``), else as :func:`_clear_instants` says
    (clears; anything else at its exit, ``s_ts``)."""
    out = s_ts.copy()
    left = kind.copy()
    if lk is not None:
        rows = np.flatnonzero(kind != K_SYSCALL)
        v = visible_instants(sc["tid"][corr][rows], sc["ts_enter"][corr][rows], sc["ts"][corr][rows],
                             lk["tid"], lk["ts"])
        ok = v >= 0
        out[rows[ok]] = v[ok]
        left[rows[ok]] = K_SYSCALL
    if w is not None and (left == K_SC_CLEAR).any():
        out = _clear_instants(w, sc, corr, left, out)
    return out


def _clear_instants(w: dict, sc: dict, corr: np.ndarray, kind: np.ndarray, s_ts: np.ndarray) -> np.ndarray:
    """When each silent clear (K_SC_CLEAR) of the exits ``corr`` is applied: 1 ns after
    the syscall's own last tree write in this window, else at its exit (``s_ts``).

    Why: another thread sees the hole from the tree clear on, not from the
    exit.  ``do_vmi_align_munmap`` (mm/vma.c) stores the splits
    (``vms_gather_munmap_vmas`` -> ``__split_vma``), then clears the range
    (``vma_iter_clear_gfp``: exact fit, no event), then
    ``vms_complete_munmap_vmas`` downgrades mmap_lock and zaps the pages
    (``unmap_region``), which on a large faulted range takes hundreds of
    microseconds before the syscall returns; mremap's and brk's unmaps go
    the same way.  No other thread writes the tree in between (mmap_lock is
    held from the clear to the return).  A call that stored nothing (a whole
    VMA removed by one exact-fit clear) leaves no trace of its clear instant
    in the writes: without its ``mmap_lock`` record (:func:`_placed_instants`)
    it stays at the exit.
    """
    out = s_ts.copy()
    rows = np.flatnonzero(kind == K_SC_CLEAR)
    s_tid = sc["tid"][corr][rows]
    w_ts, w_tid = w["ts"], w["tid"]
    for t in np.unique(s_tid).tolist():
        m = rows[s_tid == t]
        wi = np.flatnonzero(w_tid == t)
        if len(wi) == 0:
            continue
        wt = w_ts[wi]  # ts-sorted
        k = np.searchsorted(wt, s_ts[m], side="right") - 1
        ok = k >= 0
        kk = np.where(ok, k, 0)
        ok &= wt[kk] >= sc["ts_enter"][corr][m]
        # 1 ns after that write: the clear follows the splits' stores
        out[m[ok]] = np.minimum(wt[kk[ok]] + 1, s_ts[m[ok]])
    return out


# rules.C_* -> record kinds
_C2K = np.array([K_SYSCALL, K_SC_CLEAR, K_SC_PROT, K_SC_WALK, K_SC_SEAL], np.int8)


def _corrections(sc: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(record kind, start, end) of the exit-time corrections of ``rows`` (:func:`mmtrace.model.rules.corrections`)."""
    kind, lo, hi = corrections(sc, rows)
    return _C2K[kind], lo, hi


def _distinct(x: np.ndarray) -> set[int]:
    if len(x) == 0:
        return set()
    x0 = x[0]
    if (x == x0).all():
        return {int(x0)}
    return set(np.unique(x).tolist())


def _writes(tw: dict, src: Source, sc_trees: np.ndarray, sc: dict) -> dict[str, np.ndarray] | None:
    """The window's tree writes that change an mm's tree, one per store, as numpy columns."""
    flags = tw["flags"]
    tree = tw["tree"]
    # A tree is an mm's when some store put one of that mm's VMAs in it, when
    # it is current->mm's, when a fork/exec/exit event names it, or a
    # tree-correcting syscall adopts it.  munmap's detach tree and tmpfs/IRQ
    # trees are none of these.  (Known so far: a write to a tree known only
    # later is dropped by the engine too, as that tree is not live.)
    ident = (flags & (TW_VAL_IS_VMA | TW_CURRENT_MM)) != 0
    t0 = tree[0]
    one = bool((tree == t0).all())  # one tree (one process): no sorting
    new = ({int(t0)} if ident.any() else set()) if one else _distinct(tree[ident])
    new |= _distinct(sc_trees)
    new.discard(0)
    if not new <= src.known:
        src.known |= new
        src._known_arr = np.array(sorted(src.known), dtype=np.uint64)
    if one:
        keep = ident if int(t0) not in src.known else np.ones(len(tree), bool)
    elif ident.all():
        keep = ident
    else:
        keep = ident | np.isin(tree, src._known_arr)
    idx = None if keep.all() else np.flatnonzero(keep)
    c = tw if idx is None else {k: v[idx] for k, v in tw.items()}
    n = len(c["ts"])
    if n == 0:
        return None
    # One store fires an outer event and an inner one (mas_store_prealloc then
    # mas_wr_node_store) with the same range and value on the same task:
    # replaying both is idempotent, so drop the inner one.  Only an inner
    # (mas_wr_*) right after its outer: two outer stores of the same range
    # and (reused) pointer can have a silent clear between them.
    inner = c["inner"]
    if n > 1 and inner.any():
        tid = c["tid"]
        same = np.zeros(n, dtype=bool)
        if (tid == tid[0]).all():  # one thread: ts order is (tid, ts) order
            a, b = slice(1, None), slice(None, -1)
        else:
            order = np.lexsort((c["ts"], tid))
            a, b = order[1:], order[:-1]
        same[a] = (
            inner[a] & ~inner[b]
            & (c["tid"][a] == c["tid"][b]) & (c["tree"][a] == c["tree"][b])
            & (c["index"][a] == c["index"][b]) & (c["last"][a] == c["last"][b])
            & (c["val"][a] == c["val"][b])
        )
        if same.any():
            keep = np.flatnonzero(~same)
            c = {k: v[keep] for k, v in c.items()}
            n = len(keep)
    fl = c["flags"]
    isvma = (fl & TW_VAL_IS_VMA) != 0
    val = np.where(isvma, c["val"], np.uint64(0))  # XA_ZERO_ENTRY & co: a clear
    # last may be ULONG_MAX (a clear to the top): user addresses are far
    # below 2**63, so capping there keeps int64 (fast to convert).
    tree = c["tree"]
    if one:
        uptr, code = tree[:1], np.zeros(n, np.int64)
    else:
        uptr, code = np.unique(tree, return_inverse=True)
    mm = c["mm"]
    out = {
        "ts": c["ts"],
        "start": np.minimum(c["index"], _I64MAX).astype(np.int64),
        "end": np.minimum(c["last"], _I64MAX).astype(np.int64) + 1,
        "val": val,
        "vm_flags": c["vm_flags"],
        "pgbase": c["vm_pgoff"].astype(np.int64) - (c["vm_start"] >> np.uint64(12)).astype(np.int64),
        "dev": c["dev"],
        "ino": c["ino"],
        "tid": c["tid"],
        "tgid": c["tgid"],
        "cur": np.where(mm != 0, mm + np.uint64(src.mt_off), np.uint64(0)),
        "flags": fl,
        "cause": np.full(n, -1, np.int64),
        "code": code.reshape(-1).astype(np.int64),
        "uptr": uptr.tolist(),
        "uptr_arr": uptr,
    }
    if src.with_causes:
        out["cause"] = _enclosing_syscall(c["ts"], c["tid"], sc)  # exits of the window and calls still open
    return out


def _enclosing_syscall(ts: np.ndarray, tid: np.ndarray, sc: dict) -> np.ndarray:
    """Row in ``sc`` of the syscall of the same thread whose [ts_enter, ts] holds each event; -1 if none."""
    out = np.full(len(ts), -1, dtype=np.int64)
    if sc is None or len(sc["ts"]) == 0 or len(ts) == 0:
        return out
    s_tid, s_in, s_out = sc["tid"], sc["ts_enter"], sc["ts"]
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
