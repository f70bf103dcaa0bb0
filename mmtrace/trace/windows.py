"""The one windowed Parquet reader: an event kind's parts handed out in ts order, by ts bound.

Each kind's parts (``events/<kind>/part-NNNNNN.parquet``) are read one at a
time, only the needed columns, decoded by the caller (:class:`KindReader`):
the model (:mod:`mmtrace.model.stream`) cuts the trace into windows of
``lo < ts <= hi`` with it, so memory is O(one part + one window), not
O(trace).  Parts need not be disjoint in ts: a part is read as soon as its
minimum ts (Parquet statistics) is within the bound.  Syscall rows carry
``ts_enter`` too: :meth:`KindReader.open_at` reads ahead the calls still
open at a bound.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["KindReader", "strings", "num", "ts_range", "SIGNED"]

#: columns read as int64 (the rest uint64)
SIGNED = {"ts", "ts_enter", "tgid", "tid", "ret", "pid", "child_tgid", "flags", "dev", "op"}
PART_CACHE = 4  # decoded parts kept per kind for queries


def strings(col) -> tuple[np.ndarray, list[str]]:
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


def num(col, name: str) -> np.ndarray:
    dt = np.int64 if name in SIGNED else np.uint64
    if isinstance(col, pd.Series):
        return col.to_numpy(dtype=dt)
    if col.num_chunks == 0:
        return np.zeros(0, dt)
    return col.to_numpy().astype(dt, copy=False)


class KindReader:
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
        self.enter_min: dict = {}  # part -> min ts_enter (syscalls: a call may start in an earlier part)
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
                    lo, hi = ts_range(md)
                    if "ts_enter" in self.columns:
                        ent = ts_range(md, "ts_enter")[0]
                        self.enter_min[p] = min(ent, lo)
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
                if "ts_enter" in self.columns and "ts_enter" in df:
                    self.enter_min[id(df)] = min(int(df["ts_enter"].min()), int(ts.min()))
        self.parts.sort(key=lambda x: x[1])
        self.reset()

    def reset(self) -> None:
        self.next_part = 0
        self.nseq = 0  # rows read so far: ``seq`` numbers each row once per pass
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
            while len(self.cache) > PART_CACHE:
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
            n = len(cols["ts"])
            cols = dict(cols, seq=np.arange(self.nseq, self.nseq + n, dtype=np.int64))
            self.nseq += n
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

    def open_at(self, bound: float) -> dict[str, np.ndarray] | None:
        """Rows not handed out yet that began at or before ``bound`` (``ts_enter <= bound``):
        the syscalls open at the end of a window.  Reads ahead every part that may hold one."""
        while self.next_part < len(self.parts):
            src, pmin, _ = self.parts[self.next_part]
            if self.enter_min.get(src if not isinstance(src, pd.DataFrame) else id(src), pmin) > bound:
                break
            self._pull(pmin)
        got = []
        for x in self.pending:
            m = x["ts_enter"] <= bound
            if m.any():
                got.append({c: v[m] for c, v in x.items()})
        if not got:
            return None
        return got[0] if len(got) == 1 else {c: np.concatenate([g[c] for g in got]) for c in got[0]}

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


def ts_range(md, col: str = "ts") -> tuple[int, int]:
    """min/max of column ``col`` from Parquet statistics (whole range if absent)."""
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    k = names.index(col)
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
