"""Vectorised preprocessing: the trace read in bounded, ts-ordered windows.

The replay (:mod:`mmtrace.model.replay`) is the only sequential part; it
walks one :class:`Window` at a time.  Everything that can be decided per
event without the tree state is decided here with numpy, per window: which
tree writes matter, duplicates of one store, the syscall enclosing a write.

Reading: each event kind's parts (``events/<kind>/part-NNNNNN.parquet``) are
read one at a time, only the needed columns, and handed out by ts bound
(:class:`_KindReader`): window ``k`` holds every event with ``B[k-1] < ts <=
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
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..events.schema import TW_CURRENT_MM, TW_VAL_IS_VMA

__all__ = [
    "Source", "Window", "Stream", "build_stream", "no_gc", "mm_mt_offset",
    "K_STORE", "K_CLEAR", "K_SYSCALL", "K_PROC", "K_EXIT_MMAP", "K_SC_CLEAR", "K_SC_PROT", "K_SC_GENERIC",
    "R_WRITE", "R_SYSCALL", "R_PROC", "R_EXIT_MMAP",
]

K_STORE, K_CLEAR, K_SYSCALL, K_PROC, K_EXIT_MMAP = 0, 1, 2, 3, 4
# Syscall exits whose correction is precomputed (``start``/``end``: the range):
# K_SYSCALL changes nothing (failed, or nothing to correct) but may adopt a
# tree; K_SC_CLEAR must leave [start, end) empty; K_SC_PROT sets the perms
# of [start, end) to arg2; K_SC_GENERIC: the engine works it out.
K_SC_CLEAR, K_SC_PROT, K_SC_GENERIC = 5, 6, 7
_SC_KINDS = (K_SYSCALL, K_SC_CLEAR, K_SC_PROT, K_SC_GENERIC)
# Old tuple-record types (Window.records(), used with an observer).
R_WRITE, R_SYSCALL, R_PROC, R_EXIT_MMAP = 0, 1, 2, 3

# ma_write events that are not stores: mas_is_span_wr is a probe ("is this a
# spanning write?") that reports the range and value of a store that is
# reported again by the store itself.
_NOT_STORES = ("mas_is_span_wr",)

# Syscalls whose effect is not fully in their stores (see replay.Engine._on_syscall).
CORRECTING = ("munmap", "mprotect", "pkey_mprotect", "mremap", "brk")

_TW_COLS = ("ts", "tgid", "tid", "fn", "tree", "mm", "index", "last", "val", "vm_start", "vm_flags",
            "vm_pgoff", "ino", "dev", "op", "flags")
_SC_COLS = ("ts", "ts_enter", "tgid", "tid", "ret", "mm", "brk_enter", "brk_exit",
            "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "syscall")
_PROC_COLS = ("what", "ts", "tgid", "tid", "pid", "child_tgid", "tree", "flags", "comm", "filename")
_SIGNED = {"ts", "ts_enter", "tgid", "tid", "ret", "pid", "child_tgid", "flags", "dev", "op"}
_I64MAX = np.uint64(2**63 - 2)
_PART_CACHE = 4  # decoded parts kept per kind for queries


def mm_mt_offset(metadata: dict) -> int:
    """offsetof(struct mm_struct, mm_mt) on the traced kernel (BTF, recorded in the trace)."""
    off = ((metadata.get("probe_plan") or {}).get("offsets") or {}).get("mm_struct.mm_mt")
    return int(off) if off is not None else 64


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


# -- reading ------------------------------------------------------------------
def _strings(col) -> tuple[np.ndarray, list[str]]:
    """(codes, names) of a string/categorical column (pyarrow or pandas)."""
    if isinstance(col, pd.Series):
        if hasattr(col, "cat"):
            return col.cat.codes.to_numpy().astype(np.int32), [str(c) for c in col.cat.categories]
        codes, names = pd.factorize(col.astype(str))
        return codes.astype(np.int32), [str(c) for c in names]
    import pyarrow as pa

    if col.num_chunks == 0:
        return np.zeros(0, np.int32), []
    arr = col.combine_chunks() if col.num_chunks > 1 else col.chunk(0)
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    codes = arr.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, [str(x) for x in arr.dictionary.to_pylist()]


def _num(col, name: str) -> np.ndarray:
    dt = np.int64 if name in _SIGNED else np.uint64
    if isinstance(col, pd.Series):
        return col.to_numpy(dtype=dt)
    if col.num_chunks == 0:
        return np.zeros(0, dt)
    return col.to_numpy().astype(dt, copy=False)


class _KindReader:
    """The rows of one event kind, in ts order, handed out by ts bound.

    ``decode(getcol, n)`` turns one part (``getcol(name)`` gives a column)
    into a dict of numpy arrays with at least ``ts`` (int64); rows may be
    dropped there (filtering at read keeps memory down).
    """

    def __init__(self, trace, kind: str, columns, decode) -> None:
        self.kind = kind
        self.columns = list(columns)
        self.decode = decode
        self.parts: list[tuple[object, int, int]] = []  # (path or frame, min ts, max ts)
        self.cache: OrderedDict = OrderedDict()
        path = getattr(trace, "path", None)
        d = Path(path) / "events" / kind if path is not None else None
        if d is not None and d.is_dir():
            import pyarrow.parquet as pq

            # Parts the trace found damaged (checksums, schema) are gaps, not events.
            skip = set(trace.known_unreadable_parts(kind)) if hasattr(trace, "known_unreadable_parts") else set()
            for p in sorted(d.glob("part-*.parquet")):
                if p in skip:
                    continue
                try:
                    md = pq.ParquetFile(p).metadata
                    lo, hi = _ts_range(md)
                except Exception as e:  # pyarrow raises several types for damaged files
                    warnings.warn(f"{p}: damaged part skipped ({e})", stacklevel=3)
                    continue
                if md.num_rows:
                    self.parts.append((p, lo, hi))
        elif d is None and kind in set(getattr(trace, "kinds", ())):
            df = trace.raw_events(kind)
            if len(df):
                ts = df["ts"].to_numpy(dtype=np.int64)
                self.parts.append((df, int(ts.min()), int(ts.max())))
        self.parts.sort(key=lambda x: x[1])
        self.reset()

    def reset(self) -> None:
        self.next_part = 0
        # rows read and not handed out yet: ts-sorted chunks, each after the one before
        self.pending: list[dict[str, np.ndarray]] = []

    def _load(self, k: int) -> dict[str, np.ndarray] | None:
        src = self.parts[k][0]
        hit = self.cache.get(k)
        if hit is not None:
            self.cache.move_to_end(k)
            return hit
        if isinstance(src, pd.DataFrame):
            cols = self.decode(lambda c: src[c], len(src))
        else:
            import pyarrow.parquet as pq

            try:
                tbl = pq.read_table(src, columns=self.columns, page_checksum_verification=True)
            except Exception as e:
                warnings.warn(f"{src}: damaged part skipped ({e})", stacklevel=3)
                return None
            cols = self.decode(tbl.column, tbl.num_rows)
            del tbl
        ts = cols["ts"]
        if len(ts) > 1 and not (ts[1:] >= ts[:-1]).all():
            o = np.argsort(ts, kind="stable")
            cols = {c: v[o] for c, v in cols.items()}
        return cols

    def load_cached(self, k: int) -> dict[str, np.ndarray] | None:
        cols = self._load(k)
        if cols is not None and k not in self.cache:
            self.cache[k] = cols
            while len(self.cache) > _PART_CACHE:
                self.cache.popitem(last=False)
        return cols

    def _pull(self, bound: float) -> bool:
        """Read every not-yet-read part whose min ts <= bound; True if any."""
        got = False
        while self.next_part < len(self.parts) and self.parts[self.next_part][1] <= bound:
            cols = self._load(self.next_part)
            self.next_part += 1
            if cols is None or len(cols["ts"]) == 0:
                continue
            got = True
            p = self.pending
            if p and p[-1]["ts"][-1] > cols["ts"][0]:  # overlapping parts: merge what is pending
                merged = {c: np.concatenate([x[c] for x in p] + [cols[c]]) for c in cols}
                o = np.argsort(merged["ts"], kind="stable")
                self.pending = [{c: v[o] for c, v in merged.items()}]
            else:
                p.append(cols)
        return got

    def next_bound(self, chunk: int) -> float:
        """The ts bound of the next window of about ``chunk`` rows (inf: all the rest)."""
        while True:
            n = sum(len(x["ts"]) for x in self.pending)
            if n > chunk:
                k = chunk - 1  # the ts of the chunk-th pending row
                for x in self.pending:
                    m = len(x["ts"])
                    if k < m:
                        b = int(x["ts"][k])
                        break
                    k -= m
                if not self._pull(b):
                    return b
            elif self.next_part < len(self.parts):
                self._pull(self.parts[self.next_part][1])
            else:
                return np.inf

    def take(self, bound: float) -> dict[str, np.ndarray] | None:
        """Every row not handed out yet with ts <= bound (None if none)."""
        self._pull(bound)
        out = []
        p = self.pending
        while p:
            x = p[0]
            ts = x["ts"]
            if bound == np.inf or ts[-1] <= bound:
                out.append(x)
                p.pop(0)
                continue
            k = int(np.searchsorted(ts, bound, side="right"))
            if k:
                out.append({c: v[:k] for c, v in x.items()})
                p[0] = {c: v[k:] for c, v in x.items()}
            break
        if not out:
            return None
        if len(out) == 1:
            return out[0]
        return {c: np.concatenate([x[c] for x in out]) for c in out[0]}

    def between(self, lo: float, hi: float) -> dict[str, np.ndarray] | None:
        """Rows with lo < ts <= hi (random access, through a small part cache)."""
        got = []
        for k, (_, pmin, pmax) in enumerate(self.parts):
            if pmax <= lo or pmin > hi:
                continue
            cols = self.load_cached(k)
            if cols is None:
                continue
            ts = cols["ts"]
            a = int(np.searchsorted(ts, lo, side="right")) if lo > -np.inf else 0
            b = int(np.searchsorted(ts, hi, side="right")) if hi < np.inf else len(ts)
            if b > a:
                got.append({c: v[a:b] for c, v in cols.items()})
        if not got:
            return None
        if len(got) == 1:
            return got[0]
        merged = {c: np.concatenate([g[c] for g in got]) for c in got[0]}
        o = np.argsort(merged["ts"], kind="stable")
        return {c: v[o] for c, v in merged.items()}


def _ts_range(md) -> tuple[int, int]:
    """min/max of the ts column from Parquet statistics (whole part if absent)."""
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    k = names.index("ts")
    lo, hi = None, None
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(k).statistics
        if st is None or not st.has_min_max:
            return -(2**63), 2**63 - 1
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    if lo is None:
        return -(2**63), 2**63 - 1
    return int(lo), int(hi)


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

    def records(self) -> list[tuple]:
        """Every record as a tuple (slow; for the replay with an observer).

        ``(R_WRITE, ts, tree, lo, hi, val, flags, tid, tgid, cur_tree, vm_flags, pgbase, dev, ino, cause)``,
        ``(R_SYSCALL, ts, row)``, ``(R_PROC, ts, row)``, ``(R_EXIT_MMAP, ts, row)``.
        """
        c = self.cols
        uptr = self.uptr
        out = []
        for k, kind in enumerate(c["kind"].tolist()):
            ts, a = int(c["ts"][k]), int(c["a"][k])
            if kind <= K_CLEAR:
                out.append((R_WRITE, ts, uptr[a], int(c["start"][k]), int(c["end"][k]),
                            int(c["val"][k]) if kind == K_STORE else 0, int(c["flags"][k]), int(c["tid"][k]),
                            int(c["tgid"][k]), int(c["cur"][k]), int(c["vm_flags"][k]), int(c["pgbase"][k]),
                            int(c["dev"][k]), int(c["ino"][k]), int(c["cause"][k])))
            else:
                out.append((R_SYSCALL if kind in _SC_KINDS else R_PROC if kind == K_PROC else R_EXIT_MMAP, ts, a))
        return out


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
    carries the row of its enclosing syscall (for :func:`mmtrace.model.changes`);
    that needs the whole syscall table, so it is read as one window.

    ``proc``: the proc table as lists (``what``, ``ts``, ``tgid``, ``tid``,
    ``pid``, ``child_tgid``, ``tree``, ``flags``, ``comm``, ``filename``);
    ``forks``/``execs``: tree -> sorted ts of the fork/exec events naming it
    (a fork child's tree is written before its fork event fires); ``em_mt``:
    exit_mmap tree pointers.
    """

    def __init__(self, trace, *, with_causes: bool = False) -> None:
        self.trace = trace
        self.with_causes = with_causes
        self.mt_off = mm_mt_offset(getattr(trace, "metadata", {}) or {})
        self.tw = _KindReader(trace, "tree_write", _TW_COLS, _decode_tw)
        # arg4, arg5: only changes() shows them
        sc_cols = _SC_COLS if with_causes else tuple(c for c in _SC_COLS if c not in ("arg4", "arg5"))
        self.scd = _ScDecoder(only_correcting=not with_causes, columns=sc_cols)
        self.scr = _KindReader(trace, "syscall", sc_cols, self.scd)
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
        if self.with_causes:
            chunk = 1 << 62
        while True:
            hi = tw.next_bound(chunk)
            w = self._window(lo, hi, tw.take(hi), scr.take(hi))
            n_tw += w.n_tree_write
            yield w
            if hi == np.inf:
                self.n_tree_write = n_tw
                return
            lo = hi

    def window_between(self, lo: float, hi: float) -> Window:
        """The records with lo < ts <= hi (random access; for checkpointed queries)."""
        return self._window(lo, hi, self.tw.between(lo, hi), self.scr.between(lo, hi))

    def _window(self, lo: float, hi: float, tw: dict | None, sc: dict | None) -> Window:
        mt_off = np.uint64(self.mt_off)
        if sc is None:
            sc = {"code": np.zeros(0, np.int32), **{c: np.zeros(0, np.int64 if c in _SIGNED else np.uint64)
                                                    for c in self.scd.columns if c != "syscall"}}
        sc_mm = sc["mm"]
        sc_tree = np.where(sc_mm != 0, sc_mm + mt_off, np.uint64(0))
        sc = dict(sc, tree=sc_tree)
        code = sc["code"]
        corr = np.flatnonzero(code < len(CORRECTING)) if self.with_causes else np.arange(len(code))

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
        s_ts = sc["ts"][corr]
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
        return Window(lo, hi, n_tw, cols, [] if w is None else w["uptr"], sc, self.scd.names, w, wpos)


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


_PAGE_MASK = np.uint64(4095)
_ENOMEM, _ERRNO_MAX, _MREMAP_DONTUNMAP = 12, 4095, 4


def _corrections(sc: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind, start, end) of the exit-time correction of syscalls ``rows`` (see K_SC_*),
    the same rules as :meth:`mmtrace.model.replay.Engine._on_syscall`."""
    n = len(rows)
    kind = np.full(n, K_SC_GENERIC, np.int8)
    lo = np.zeros(n, np.int64)
    hi = np.zeros(n, np.int64)
    if n == 0:
        return kind, lo, hi
    code = sc["code"][rows]
    big = np.uint64(1 << 62)
    nc = len(CORRECTING)
    # rows of each syscall (codes of the others are >= nc)
    by = np.argsort(code, kind="stable")
    cuts = np.searchsorted(code[by], np.arange(nc + 1))
    groups = {name: by[cuts[k]:cuts[k + 1]] for k, name in enumerate(CORRECTING)}

    def col(c, g):
        return sc[c][rows[g]]

    def palign(x):
        return (x + _PAGE_MASK) & ~_PAGE_MASK

    def put(g, sel, k, a_, b_):
        g = g[sel]
        kind[g] = k
        lo[g] = a_[sel].astype(np.int64)
        hi[g] = b_[sel].astype(np.int64)

    with np.errstate(over="ignore"):
        # munmap, mprotect: [arg0, arg0 + palign(arg1))
        for name in ("munmap", "mprotect", "pkey_mprotect"):
            g = groups[name]
            if not len(g):
                continue
            a0, a1, ret = col("arg0", g), col("arg1", g), col("ret", g)
            ok = (a0 < big) & (a1 < big)
            fail = ret != 0 if name == "munmap" else (ret != 0) & (ret != -_ENOMEM)
            kind[g[fail]] = K_SYSCALL
            put(g, ~fail & ok, K_SC_CLEAR if name == "munmap" else K_SC_PROT, a0, a0 + palign(a1))
        # mremap
        g = groups["mremap"]
        if len(g):
            a0, a1, a2, a3, ret = (col(c, g) for c in ("arg0", "arg1", "arg2", "arg3", "ret"))
            fail = (ret >= -_ERRNO_MAX) & (ret < 0)
            kind[g[fail]] = K_SYSCALL
            old_len, new_len = palign(a1), palign(a2)
            ok = ~fail & (a0 < big) & (a1 < big) & (a2 < big)
            inplace = ret.astype(np.uint64) == a0
            shrink = new_len < old_len
            put(g, ok & inplace & shrink, K_SC_CLEAR, a0 + new_len, a0 + old_len)
            kind[g[ok & inplace & ~shrink]] = K_SYSCALL
            moved = ok & ~inplace
            keep_old = moved & ((old_len == 0) | ((a3 & np.uint64(_MREMAP_DONTUNMAP)) != 0))
            kind[g[keep_old]] = K_SYSCALL
            put(g, moved & ~keep_old, K_SC_CLEAR, a0, a0 + old_len)
        # brk: shrink clears [new brk, old brk)
        g = groups["brk"]
        if len(g):
            b0, b1 = palign(col("brk_enter", g)), palign(col("brk_exit", g))
            ok = (b0 < big) & (b1 < big)
            sh = b1 < b0
            kind[g[ok & ~sh]] = K_SYSCALL
            put(g, ok & sh, K_SC_CLEAR, b1, b0)
    return kind, lo, hi


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
        out["cause"] = _enclosing_syscall(c["ts"], c["tid"], sc)  # one window: the whole table
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


# -- the whole trace as one stream (changes(), tests) -------------------------------
@dataclass
class Stream:
    """The whole trace as one window (with causes: every syscall, each write's cause).

    ``records``: tuples as :meth:`Window.records`; ``sc``: the syscall table
    as Python lists; ``proc``, ``forks``, ``execs``: see :class:`Source`.
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
    window: Window | None = None
    source: Source | None = None


def build_stream(trace, *, with_causes: bool = False) -> Stream:
    """The whole trace merged into one ts-ordered stream (memory O(trace): for
    :func:`mmtrace.model.changes` and tests; the model itself reads windows)."""
    with no_gc():
        src = Source(trace, with_causes=with_causes)
        (w,) = list(src.windows(1 << 62))
        return Stream(
            records=w.records(), ts=w.cols["ts"], sc=w.sc_lists(), proc=src.proc, forks=src.forks,
            execs=src.execs, n_tree_write=src.n_tree_write,
            n_writes_kept=int(np.count_nonzero(w.cols["kind"] <= K_CLEAR)), mt_off=src.mt_off, window=w, source=src,
        )
