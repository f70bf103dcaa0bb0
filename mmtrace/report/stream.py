"""The report's one pass over the changes: every section fed window by window.

:func:`stream_changes` walks :func:`mmtrace.model.iter_changes` once (the
one replay), and for each window's change rows:

- adds ``comm`` and ``call`` and appends them to ``changes.csv`` /
  ``changes.parquet`` (:class:`mmtrace.report.csvfast.CsvAppender`,
  ``pyarrow.parquet.ParquetWriter``);
- finds the window's splits and merges (:func:`mmtrace.detect.splits` /
  :func:`~mmtrace.detect.merges` on the window, with the trace's maple tree
  writes cut to the window's time span) and appends them the same way;
- keeps, instead of the frames, a light index of the changes (pid, tid, ts,
  ts_end, kind, cause, syscall, ret, call: what the text summary and the
  page's labels read), the same of the splits and merges (with ``count``),
  and bounded samples of their full rows for the page's tables
  (:class:`Sampler`);
- answers the unmapped-area check (:class:`mmtrace.detect.unmapped_area.UnmappedAreaCheck`)
  at each ``vm_unmapped_area`` event's instant from the same replay
  (``iter_changes(probe=...)``): ``trace.anomalies()`` then reads it, with no
  replay of its own;
- feeds each window's rows, in the order they completed, to the VMA
  timeline (:class:`mmtrace.model.timeline.VmaTimeline`: the VMA counts
  and lifetimes, :meth:`ReportData.vma_counts` / :meth:`~ReportData.vmas`,
  with no second replay).

Rows are written in ``ts`` order, as ``trace.changes()`` sorts them: a
window's rows are held back until the next window's rows are known (a change
still open at a window's end is yielded with the window that ends it).  A
change that stays open across more than one window end (16,384 tree writes
each by default; seen only with windows of a few writes, an exec's setup) is
written where it ends, out of ts order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["Sampler", "stream_changes", "CHANGE_INDEX", "SM_INDEX"]

#: Columns of :meth:`ReportData.change_index` (every change, light).
CHANGE_INDEX = ["ts", "ts_end", "pid", "tid", "kind", "cause", "syscall", "ret", "call"]
#: Columns of :meth:`ReportData.split_index` / ``merge_index``.
SM_INDEX = ["ts", "ts_end", "pid", "kind", "cause", "count"]


class Sampler:
    """At most ~``2 * cap`` rows of a table that arrives in chunks, spread evenly
    over each group of ``by``: the rows of a group are kept one in ``stride``,
    the stride of the biggest group doubled while too many are kept (the last
    row of every group kept too).  :meth:`frame` then picks at most ``cap``
    with :func:`mmtrace.report.views.sample_rows`: a table that never exceeds
    ``cap`` rows is kept whole, as the page showed it before.

    Columnar, whatever the number of groups (a trace of thousands of
    processes has tens of thousands): strides are powers of two that only
    grow, so a group keeps exactly its rows whose index in the group is a
    multiple of its stride, ceil(seen / stride) of them; rows a doubling
    dropped are filtered out when the stored ones pass ``4 * cap``."""

    def __init__(self, cap: int, by=("pid", "kind", "cause")) -> None:
        self.cap = int(cap)
        self.by = list(by)
        self.total = 0
        self._ids: dict[tuple, int] = {}  # group key -> id, in the order of the groups' first rows
        self._stride = np.ones(0, dtype=np.int64)
        self._seen = np.zeros(0, dtype=np.int64)
        self._parts: list[pd.DataFrame] = []  # rows kept when they came (_seq, _gi, _gid)
        self._last: list[pd.DataFrame] = []  # each chunk's last row of each of its groups
        self._stored = 0

    def _sizes(self) -> np.ndarray:
        return -(-self._seen // self._stride)

    @property
    def _kept(self) -> int:
        """Rows the groups keep now."""
        return int(self._sizes().sum())

    def add(self, df: pd.DataFrame) -> None:
        if len(df) == 0:
            return
        n = len(df)
        seq = np.arange(self.total, self.total + n)
        self.total += n
        by = [c for c in self.by if c in df.columns]
        if by:
            local = df.groupby(by, sort=False, observed=True).ngroup().to_numpy()
            _, first = np.unique(local, return_index=True)
            keys = df[by].iloc[first].itertuples(index=False, name=None)
        else:
            local, first, keys = np.zeros(n, dtype=np.int64), np.zeros(1, dtype=np.int64), [()]
        glob = np.empty(len(first), dtype=np.int64)
        for j, key in enumerate(keys):
            glob[j] = self._ids.setdefault(key, len(self._ids))
        grow = len(self._ids) - len(self._seen)
        if grow:
            self._stride = np.concatenate([self._stride, np.ones(grow, dtype=np.int64)])
            self._seen = np.concatenate([self._seen, np.zeros(grow, dtype=np.int64)])
        gid = glob[local]
        rank = pd.Series(gid).groupby(gid).cumcount().to_numpy()
        idx = self._seen[gid] + rank
        keep = np.flatnonzero(idx % self._stride[gid] == 0)
        self._parts.append(df.iloc[keep].assign(_seq=seq[keep], _gi=idx[keep], _gid=gid[keep]))
        # the last row of each group of the chunk
        last = np.sort(n - 1 - np.unique(gid[::-1], return_index=True)[1])
        self._last.append(df.iloc[last].assign(_seq=seq[last], _gi=idx[last], _gid=gid[last]))
        self._seen += np.bincount(gid, minlength=len(self._seen))
        self._stored += len(keep) + len(last)
        while self._kept > 2 * self.cap and self._thin():
            pass
        if self._stored > 4 * self.cap + 2 * len(self._ids):
            self._compact()

    def _thin(self) -> bool:
        """Double the stride of the biggest group (the first such group);
        False when every group is down to its first row (more groups than
        ``2 * cap``: nothing left to drop)."""
        sizes = self._sizes()
        k = int(np.argmax(sizes))
        if sizes[k] <= 1:
            return False
        self._stride[k] *= 2
        return True

    def _kept_rows(self) -> pd.DataFrame:
        kept = pd.concat(self._parts) if len(self._parts) > 1 else self._parts[0]
        return kept[kept["_gi"].to_numpy() % self._stride[kept["_gid"].to_numpy()] == 0]

    def _compact(self) -> None:
        self._parts = [self._kept_rows()]
        last = pd.concat(self._last) if len(self._last) > 1 else self._last[0]
        self._last = [last.drop_duplicates("_gid", keep="last")]
        self._stored = len(self._parts[0]) + len(self._last[0])

    def frame(self) -> pd.DataFrame:
        """The rows kept (at most ``cap``, in arrival order), without the helper columns."""
        if not self._parts:
            return pd.DataFrame()
        self._compact()
        df = pd.concat([self._parts[0], self._last[0]], ignore_index=True)
        df = df.drop_duplicates("_seq").sort_values("_seq", ignore_index=True)
        from .views import sample_rows

        df = df.iloc[sample_rows(df, self.cap, by=self.by)].reset_index(drop=True)
        return df.drop(columns=["_seq", "_gi", "_gid"])


class _Writes:
    """The trace's maple tree writes, the columns :func:`mmtrace.detect.structure.write_sequences`
    reads, by ts range through the one windowed reader (:class:`mmtrace.trace.windows.KindReader`:
    a few parts decoded at a time, not the whole table)."""

    COLUMNS = ["ts", "tree", "tid", "fn", "index", "last", "val"]

    def __init__(self, trace) -> None:
        from ..trace.windows import KindReader

        self._code: dict[str, int] = {}
        self.reader = KindReader(trace, "tree_write", self.COLUMNS, self._decode)

    def _decode(self, getcol, n: int) -> dict[str, np.ndarray]:
        from ..trace.windows import num, strings

        codes, names = strings(getcol("fn"))
        lut = np.array([self._code.setdefault(x, len(self._code)) for x in names] + [0], np.int32)
        nan = self._code.setdefault("nan", len(self._code)) if (codes < 0).any() else 0
        out = {c: num(getcol(c), c) for c in self.COLUMNS if c != "fn"}
        out["fn"] = np.where(codes < 0, nan, lut[codes])
        return out

    def between(self, lo: int, hi: int) -> pd.DataFrame:
        """The writes with ``lo <= ts <= hi``, sorted by ts, as ``raw_events("tree_write")`` has them."""
        cols = self.reader.between(lo - 1, hi)
        cats = list(self._code)
        if cols is None:
            return pd.DataFrame({c: pd.Categorical([], categories=cats) if c == "fn" else np.zeros(0, np.uint64)
                                 for c in self.COLUMNS})
        df = pd.DataFrame({c: cols[c] for c in self.COLUMNS if c != "fn"})
        df["fn"] = pd.Categorical.from_codes(cols["fn"], categories=cats)
        return df


class _TraceSlice:
    """The trace, with ``raw_events("tree_write")`` cut to ``[lo, hi]`` ns: what
    :func:`mmtrace.detect.structure.write_sequences` reads for one window."""

    def __init__(self, trace, writes: _Writes, lo: int, hi: int) -> None:
        self._trace = trace
        self._tw = writes.between(lo, hi)

    def raw_events(self, kind: str) -> pd.DataFrame:
        return self._tw if kind == "tree_write" else self._trace.raw_events(kind)

    def __getattr__(self, name):
        return getattr(self._trace, name)


class _Table:
    """One table file per format, appended chunk by chunk."""

    def __init__(self, out: Path, name: str, fmts, columns: list[str]) -> None:
        from .csvfast import CsvAppender

        self.paths = {f: out / f"{name}.{f}" for f in fmts}
        self.csv = CsvAppender(self.paths["csv"], columns) if "csv" in fmts else None
        self.pq = None
        self.columns = columns
        self.out, self.name, self.fmts = out, name, fmts

    def write(self, df: pd.DataFrame, cells: dict | None = None) -> None:
        """Append ``df``; ``cells``: CSV cells of some columns already made (:func:`mmtrace.report.csvfast.csv_columns`)."""
        if len(df) == 0:
            return
        if self.csv is not None:
            self.csv.write(df, cells)
        if "parquet" in self.fmts:
            import pyarrow.parquet as pq

            from .export import arrow_table

            t = arrow_table(df)
            if self.pq is None:
                self.pq = pq.ParquetWriter(self.paths["parquet"], t.schema)
            elif t.schema != self.pq.schema:
                t = t.cast(self.pq.schema)
            self.pq.write_table(t)

    def close(self, empty: pd.DataFrame) -> None:
        if self.csv is not None:
            if self.csv.rows == 0:
                self.csv.columns = list(empty.columns)
            self.csv.close()
        if "parquet" in self.fmts:
            if self.pq is None:
                import pyarrow.parquet as pq

                from .export import arrow_table

                pq.write_table(arrow_table(empty), self.paths["parquet"])
            else:
                self.pq.close()


class _Probe:
    """An :class:`mmtrace.detect.unmapped_area.UnmappedAreaCheck` fed by the changes
    pass; a failure stops it (``ok`` False) instead of the pass."""

    def __init__(self, check) -> None:
        self.check, self.ok = check, True
        self.probe = (check.at, self)

    def __call__(self, engine, k: int) -> None:
        if self.ok:
            try:
                self.check(engine, k)
            except Exception:  # noqa: BLE001 - the check alone will say why (anomalies)
                self.ok = False


def _unmapped_area(trace) -> _Probe | None:
    if not hasattr(trace, "unmapped_area_check"):
        return None
    from ..detect.unmapped_area import UnmappedAreaCheck

    try:
        check = UnmappedAreaCheck(trace)
    except Exception:  # noqa: BLE001 - as above
        return None
    return _Probe(check) if check.n else None


def stream_changes(rd, out: Path, fmts, *, page_rows: dict, progress=None) -> dict[str, dict[str, Path]]:
    """Write changes, splits and merges of ``rd.trace`` into ``out`` in one pass and
    keep in ``rd`` what the rest of the report reads (see the module's doc).
    Returns {table: {format: path}}.  An error while streaming propagates (the
    caller records it); the files then hold what was written."""
    from ..detect import merges as _merges
    from ..detect import split_merge_table
    from ..detect import splits as _splits
    from ..model import iter_changes
    from ..model.tables import vma_text
    from .frames import _calls, _comm, _EMPTY_CHANGES

    trace = rd.trace
    tw = _Writes(trace)
    tables = {n: _Table(out, n, fmts, []) for n in ("changes", "splits", "merges")}
    tuples = "parquet" not in fmts  # splits/merges keep their VMAs as numbers (see emit)
    memo: dict = {}
    index: list[pd.DataFrame] = []
    sm_index: dict[str, list[pd.DataFrame]] = {"splits": [], "merges": []}
    samples = {"changes": Sampler(page_rows["changes"]), "splits_merges": Sampler(page_rows["splits_merges"])}
    held: pd.DataFrame | None = None
    n_events = max(1, sum(int(v) for v in (trace.metadata.get("events") or {}).values()))
    t_lo = int(trace.metadata.get("start_ns") or 0)
    t_hi = int(rd.t1 or 0)
    empty = {}

    def emit(ch: pd.DataFrame) -> None:
        ch = ch.reset_index(drop=True)
        ch.insert(4, "comm", _comm(trace, ch))
        ch.insert(ch.columns.get_loc("ret") + 1, "call", _calls(ch, 6, memo))
        pts = split_merge_table(ch)
        if pts:
            lo, hi = int(ch["ts"].min()), int(ch["ts_end"].max())
            sl = _TraceSlice(trace, tw, lo, hi)
        for name, fn in (("splits", _splits), ("merges", _merges)):
            # CSV only: before/after as the numbers, their text made per column
            # (the page's sample gets its dicts at the end)
            f = fn(sl, ch, pts, dicts=not tuples) if pts else None
            if f is None or len(f) == 0:
                continue
            f = f.copy()
            f.insert(f.columns.get_loc("ret") + 1, "call", _calls(f, 4, memo))
            cells = {c: vma_text(f[c].tolist(), "vma") for c in ("before", "after")} if tuples else None
            tables[name].write(f, cells)
            sm_index[name].append(f[SM_INDEX])
            samples["splits_merges"].add(f)
        index.append(ch[CHANGE_INDEX])
        table = ch.drop(columns=["before_vmas", "after_vmas"])
        # before/after ((start, end, perms) lists) as CSV text from the numbers of before_vmas/after_vmas
        cells = {c: vma_text(ch[f"{c}_vmas"].tolist()) for c in ("before", "after")} if tables["changes"].csv else None
        tables["changes"].write(table, cells)
        samples["changes"].add(table)

    timeline = rd.timeline()
    # the unmapped-area check, answered by this same pass (no replay of its own);
    # if it fails, trace.anomalies() runs it alone later and records the error
    ua = _unmapped_area(trace)
    for w in iter_changes(trace, sink=timeline.add, probe=ua.probe if ua is not None else None):
        if len(w) == 0:
            continue
        w = w.sort_values("ts", kind="stable")
        if held is not None:
            # rows of later windows can start before the end of this one: write only
            # what comes before the earliest row of the new window
            both = pd.concat([held, w], ignore_index=True).sort_values("ts", kind="stable", ignore_index=True)
            cut = int(w["ts"].iloc[0])
            n_ok = int(np.searchsorted(both["ts"].to_numpy(np.int64), cut, side="left"))
            if n_ok:
                emit(both.iloc[:n_ok])
            held = both.iloc[n_ok:]
        else:
            held = w
        if progress is not None and t_hi > t_lo:
            progress.update(min(1.0, (int(w["ts_end"].max()) - t_lo) / (t_hi - t_lo)))
    if held is not None and len(held):
        emit(held)
    if ua is not None and ua.ok:
        trace.unmapped_area_check(ua.check)
    from ..detect.structure import _OUT_COLUMNS

    empty["changes"] = _EMPTY_CHANGES()
    empty["splits"] = empty["merges"] = pd.DataFrame(columns=_OUT_COLUMNS[:12] + ["call"] + _OUT_COLUMNS[12:])
    for n, t in tables.items():
        t.close(empty[n])

    def cat(parts, cols):
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in cols})

    rd._c["change_index"] = cat(index, CHANGE_INDEX)
    rd._c["split_index"] = cat(sm_index["splits"], SM_INDEX)
    rd._c["merge_index"] = cat(sm_index["merges"], SM_INDEX)
    rd._c["change_sample"] = (samples["changes"].frame(), samples["changes"].total)
    sm = samples["splits_merges"].frame()
    if tuples and len(sm):
        from ..detect.structure import vma_dicts

        for c in ("before", "after"):
            sm[c] = vma_dicts(sm[c].tolist())
    rd._c["sm_sample"] = (sm, samples["splits_merges"].total)
    rd._c["timeline"] = timeline
    rd._c["streamed"] = True
    del n_events
    return {n: t.paths for n, t in tables.items()}
