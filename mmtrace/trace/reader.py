"""Reading a trace directory written by mmtrace.trace.writer.

Nothing read from a trace is unpickled or evaluated: metadata is JSON and
tables are Parquet.
"""

from __future__ import annotations

import json
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..events.schema import KINDS
from .writer import FORMAT, FORMAT_VERSION

__all__ = ["TraceFile", "TraceError", "IncompleteTraceWarning"]

# Columns shown as pandas categoricals: few distinct values, many rows.
_CATEGORICAL = {"fn", "syscall", "what", "comm", "perms", "when"}


def _fixed_width(t: pa.DataType) -> bool:
    """Arrow types that to_pandas hands over as plain numpy arrays (no nulls)."""
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _read_parts(parts: list[Path]) -> pd.DataFrame:
    """The parts of one table as one DataFrame, rows in part order; damaged parts are skipped."""
    files: list[tuple[Path, pq.ParquetFile]] = []
    for p in parts:
        try:
            # ParquetFile, not read_table: no dataset layer (nor its import) per part.
            files.append((p, pq.ParquetFile(p)))
        except Exception as e:  # pyarrow raises several types for damaged files
            warnings.warn(f"{p}: damaged part skipped ({e})", stacklevel=3)
    if len(files) > 1 and all(f.schema_arrow.equals(files[0][1].schema_arrow) for _, f in files[1:]):
        return _read_same_schema(files)
    tables = []
    for p, f in files:
        try:
            with f:
                tables.append(f.read())
        except Exception as e:
            warnings.warn(f"{p}: damaged part skipped ({e})", stacklevel=3)
    if not tables:
        return pd.DataFrame()
    try:
        # One Arrow table, then one conversion: zero-copy for the numeric
        # columns of a one-part table, ~50x faster than concatenating frames.
        return pa.concat_tables(tables, promote_options="default").to_pandas(split_blocks=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def _read_same_schema(files: list[tuple[Path, pq.ParquetFile]]) -> pd.DataFrame:
    """_read_parts for several parts of one schema: the frame concat_tables +
    to_pandas would give, with half the memory traffic.

    Loading is dominated by memory, not by Parquet decoding: Arrow decodes
    the parts into one set of buffers, then to_pandas copies the chunks of
    each column into a second one, and first-touched pages are expensive
    (most of the time on VMs whose free memory goes back to the host).  So
    the fixed-width columns are copied part by part into preallocated arrays,
    each part is freed before the next is decoded (so that the allocator
    hands its buffers out again), and to_pandas then takes those arrays over
    zero-copy.  Other columns (dictionaries, strings) are few and small: they
    are kept as Arrow chunks and converted as before.
    """
    schema = files[0][1].schema_arrow  # with its pandas metadata, as concat_tables keeps the first
    n = sum(f.metadata.num_rows for _, f in files)
    # Output buffers from Arrow's pool (the one the parts are decoded into),
    # not numpy's: its freed part buffers are handed out again.
    bufs = {i: pa.allocate_buffer(n * fld.type.byte_width) for i, fld in enumerate(schema) if _fixed_width(fld.type)}
    plain = {i: np.frombuffer(b, dtype=schema.field(i).type.to_pandas_dtype()) for i, b in bufs.items()}
    rest: dict[int, list[pa.Array]] = {i: [] for i in range(len(schema)) if i not in plain}
    off, read = 0, 0
    for p, f in files:
        try:
            with f:
                t = f.read()
        except Exception as e:
            warnings.warn(f"{p}: damaged part skipped ({e})", stacklevel=4)
            continue
        for i in [i for i in plain if t.column(i).null_count]:
            # to_pandas makes such a column float or object: give it the rows
            # so far as a chunk, and the rest as chunks like other columns.
            rest[i] = [pa.Array.from_buffers(schema.field(i).type, off, [None, bufs.pop(i)])]
            del plain[i]
        for i, out in plain.items():
            pos = off
            for chunk in t.column(i).chunks:
                out[pos : pos + len(chunk)] = chunk.to_numpy(zero_copy_only=True)
                pos += len(chunk)
        for i, chunks in rest.items():
            chunks.extend(t.column(i).chunks)
        off += t.num_rows
        read += 1
        del t  # before the next part is decoded, so that its buffers are reused
    if not read:
        return pd.DataFrame()
    arrays = [
        pa.chunked_array([pa.Array.from_buffers(fld.type, off, [None, bufs[i]])] if i in bufs else rest[i], type=fld.type)
        for i, fld in enumerate(schema)
    ]
    # One chunk, fixed width, no nulls: to_pandas keeps these arrays (zero-copy).
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas(split_blocks=True, self_destruct=True)


class _CommLookup:
    """The comm of (tgid, ts) from the name timeline, vectorised.

    Same answer as a backward ``merge_asof`` on ``ts`` by ``tgid``: the last
    name a process got at or before ``ts``; before its first name, that
    first name; a process never named gets code -1 (NaN).
    """

    def __init__(self, names: pd.DataFrame) -> None:
        cats = pd.Categorical(names["comm"])
        self.dtype: pd.CategoricalDtype = cats.dtype
        code = cats.codes.astype(np.int64)
        ts = names["ts"].to_numpy(np.int64)
        tgid = names["tgid"].to_numpy(np.int64)
        # Group number of each named process; names are sorted by ts and
        # unique per (ts, tgid).
        self.tgids, group = np.unique(tgid, return_inverse=True)
        group = group.ravel().astype(np.int64)
        # ts -> rank among the timeline's instants: rank(a) <= rank(b) iff
        # a <= b for a timeline instant a, so (group, rank) keys sort as
        # (tgid, ts) and fit in one int64.
        self.instants = np.unique(ts)
        rank = np.searchsorted(self.instants, ts, side="right")
        key = group * (len(self.instants) + 1) + rank
        order = np.argsort(key, kind="stable")
        self.key, self.group, self.code = key[order], group[order], code[order]
        # First name of each group: the lowest key of that group.
        self.first = np.full(len(self.tgids), -1, dtype=np.int64)
        self.first[self.group[::-1]] = self.code[::-1]

    def codes(self, ts: np.ndarray, tgid: np.ndarray) -> np.ndarray:
        """Category codes (see ``dtype``) for events sorted by ``ts``."""
        if ts.dtype == np.uint64:
            ts = ts.view(np.int64)  # CLOCK_MONOTONIC ns < 2**63; keeps searchsorted in int64
        else:
            ts = ts.astype(np.int64, copy=False)
        # The width Categorical.from_codes would pick anyway: no conversion there.
        code_dtype = np.int8 if len(self.dtype.categories) < np.iinfo(np.int8).max else np.int32
        lo, hi = (int(tgid.min()), int(tgid.max())) if len(tgid) else (0, 0)
        if lo == hi:
            # One process (the usual single-command recording): its names
            # change only at a few instants, so fill slices between them.
            out = np.full(len(ts), -1, dtype=code_dtype)
            g = int(np.searchsorted(self.tgids, lo))
            if g == len(self.tgids) or self.tgids[g] != lo:
                return out
            sel = self.group == g
            starts = np.searchsorted(ts, self.instants[self.key[sel] % (len(self.instants) + 1) - 1], side="left")
            starts[0] = 0  # before its first name: that first name
            ends = np.append(starts[1:], len(ts))
            for a, b, c in zip(starts.tolist(), ends.tolist(), self.code[sel].tolist()):
                out[a:b] = c
            return out
        g = np.searchsorted(self.tgids, tgid)
        np.minimum(g, len(self.tgids) - 1, out=g)
        known = self.tgids[g] == tgid
        key = g * (len(self.instants) + 1)
        key += np.searchsorted(self.instants, ts, side="right")
        pos = np.searchsorted(self.key, key, side="right")
        pos -= 1
        np.maximum(pos, 0, out=pos)
        out = np.where(self.group[pos] == g, self.code[pos], self.first[g]).astype(code_dtype)
        out[~known] = -1
        return out


class TraceError(Exception):
    """The path is not a readable mmtrace trace; the message says why."""


class IncompleteTraceWarning(UserWarning):
    """The recording did not stop cleanly; data up to the last flush is there."""


class TraceFile:
    """Raw access to one trace directory: metadata and tables as DataFrames."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "metadata.json"
        if not self.path.is_dir():
            raise TraceError(f"{self.path}: no such trace directory")
        if not meta_path.exists():
            raise TraceError(f"{self.path}: not an mmtrace trace (no metadata.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise TraceError(f"{meta_path}: corrupted metadata ({e})") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise TraceError(f"{meta_path}: not an mmtrace trace (format is {meta.get('format')!r})")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise TraceError(
                f"{self.path}: trace format {meta['format_version']} is newer than this mmtrace "
                f"({FORMAT_VERSION}): upgrade mmtrace"
            )
        self.metadata: dict = meta
        if not meta.get("complete"):
            warnings.warn(
                f"{self.path}: the recording did not stop cleanly "
                f"({meta.get('stop_reason') or 'killed?'}); events up to its last flush are kept",
                IncompleteTraceWarning,
                stacklevel=2,
            )
        self._cache: dict[str, pd.DataFrame] = {}

    # -- tables ---------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        """All parts of table ``name`` (e.g. ``events/syscall``) concatenated, in write order.

        A damaged part is reported (warning naming the file) and skipped; the
        others are still returned.
        """
        if name in self._cache:
            return self._cache[name]
        d = self.path / name
        parts = sorted(d.glob("part-*.parquet")) if d.is_dir() else []
        df = _read_parts(parts)
        for c in _CATEGORICAL & set(df.columns):
            if not isinstance(df[c].dtype, pd.CategoricalDtype):  # dictionary columns arrive as such
                df[c] = df[c].astype("category")
        self._cache[name] = df
        return df

    @property
    def kinds(self) -> list[str]:
        """Event kinds present in this trace."""
        d = self.path / "events"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def raw_events(self, kind: str) -> pd.DataFrame:
        """Events of ``kind`` as stored (no comm column), sorted by ts."""
        if kind not in KINDS:
            raise KeyError(f"unknown event kind {kind!r}; kinds are {', '.join(KINDS)}")
        df = self.table(f"events/{kind}")
        if len(df) and "ts" in df and not df["ts"].is_monotonic_increasing:
            df = df.sort_values("ts", kind="stable", ignore_index=True)
            self._cache[f"events/{kind}"] = df
        return df

    def events(self, kind: str) -> pd.DataFrame:
        """Events of one kind, sorted by ``ts``, with a ``comm`` column.

        Columns are the fields of the kind's struct in ``collectors/events.h``
        (see mmtrace.events.decode.to_frame), plus ``comm``: the command name
        of ``tgid`` at ``ts`` (from attach snapshots, fork and exec events).
        ``ts`` is CLOCK_MONOTONIC in ns; addresses are uint64.
        """
        df = self.raw_events(kind)
        if len(df) == 0:
            return df.assign(comm=pd.Series([], dtype="category"))
        names = self._comm_lookup
        if names is None:
            return df.assign(comm=pd.Categorical([""] * len(df)))
        # raw_events() is sorted by ts, as _CommLookup.codes needs.
        code = names.codes(df["ts"].to_numpy(), df["tgid"].to_numpy())
        out = df.copy(deep=False)
        out["comm"] = pd.Categorical.from_codes(code, dtype=names.dtype)
        return out

    @cached_property
    def _comm_timeline(self) -> pd.DataFrame:
        """(ts, tgid, comm) each time a process got a name: attach, fork, exec."""
        rows = []
        att = self.table("procfs/attach")
        if len(att):
            rows.append(att[["ts", "pid", "comm"]].rename(columns={"pid": "tgid"}))
        proc = self.raw_events("proc")
        if len(proc):
            fork = proc[(proc["what"] == "fork")]
            rows.append(fork[["ts", "child_tgid", "comm"]].rename(columns={"child_tgid": "tgid"}))
            ex = proc[proc["what"] == "exec"]
            rows.append(ex[["ts", "tgid", "comm"]])
        if not rows:
            return pd.DataFrame({"ts": [], "tgid": [], "comm": []})
        df = pd.concat(rows, ignore_index=True)
        df["comm"] = df["comm"].astype(str)
        df = df.astype({"ts": "int64", "tgid": "int64"})
        return df.sort_values("ts", kind="stable").drop_duplicates(["ts", "tgid"], keep="last")

    @cached_property
    def _comm_lookup(self) -> _CommLookup | None:
        """The name timeline indexed for events(); None when no process has a name."""
        names = self._comm_timeline
        return _CommLookup(names) if len(names) else None

    # -- summaries --------------------------------------------------------
    @property
    def lost(self) -> dict[str, int]:
        """Events the kernel could not hand over (ring buffer full), by source."""
        return {k: int(v) for k, v in (self.metadata.get("lost") or {}).items()}

    @property
    def complete(self) -> bool:
        return bool(self.metadata.get("complete"))

    def snapshots(self) -> pd.DataFrame:
        """/proc/PID/maps snapshots taken by the recorder.

        One row per VMA line: ``pid``, ``when`` ("attach" or "stop"),
        ``ts_before``/``ts_after`` (CLOCK_MONOTONIC ns around the read), then
        ``start``, ``end``, ``perms``, ``pgoff``, ``dev``, ``inode``, ``path``.
        """
        return self.table("procfs/maps")

    def kmsg(self) -> pd.DataFrame:
        """Kernel log records printed while recording: ``ts`` (CLOCK_MONOTONIC ns
        when read), ``kmsg_us``, ``seq``, ``level``, ``facility``, ``msg``."""
        return self.table("procfs/kmsg")

    def hugepages(self) -> pd.DataFrame:
        """hugetlb pool counters sampled from /sys/kernel/mm/hugepages every
        100 ms: ``ts``, ``size_kb``, ``nr_hugepages``, ``free_hugepages``,
        ``resv_hugepages``, ``surplus_hugepages``.  The in-kernel samples at
        traced syscalls and faults are ``events("hugetlb")``."""
        return self.table("procfs/hugepages")

    def processes(self) -> pd.DataFrame:
        """One row per traced process (thread group).

        Columns: ``pid`` (tgid), ``ppid`` (the forking process; the real parent
        for processes already running at attach), ``comm`` (last name),
        ``start_ts`` (fork, or attach time), ``exit_ts`` (NaN if alive at the
        end), ``exec`` (list of binaries exec'd, in order), ``threads``
        (threads seen created), ``trees`` (list of maple tree addresses of its
        mm over time, as ints), ``attached`` (True if it was already running).
        """
        proc = self.raw_events("proc")
        att = self.table("procfs/attach")
        rec: dict[int, dict] = {}

        def row(pid: int) -> dict:
            return rec.setdefault(
                pid,
                {
                    "pid": pid,
                    "ppid": -1,
                    "comm": "",
                    "start_ts": np.nan,
                    "exit_ts": np.nan,
                    "exec": [],
                    "threads": 1,
                    "trees": [],
                    "attached": False,
                },
            )

        for a in att.itertuples(index=False):
            r = row(int(a.pid))
            r.update(ppid=int(a.ppid), comm=str(a.comm), start_ts=float(a.ts), attached=True)
            if int(getattr(a, "tree", 0) or 0):
                r["trees"].append(int(a.tree))
        # Process events are few (not per-VMA): a plain loop is clear and cheap.
        for e in proc.itertuples(index=False):
            if e.what == "fork":
                if e.flags & 0x1:  # PF_THREAD
                    row(int(e.tgid))["threads"] += 1
                    continue
                r = row(int(e.child_tgid))
                r.update(ppid=int(e.tgid), comm=str(e.comm), start_ts=float(e.ts))
                if e.tree:
                    r["trees"].append(int(e.tree))
            elif e.what == "exec":
                r = row(int(e.tgid))
                r["exec"].append(str(e.filename))
                r["comm"] = str(e.comm)
                if e.tree:
                    r["trees"].append(int(e.tree))
            elif e.what == "exit":
                r = row(int(e.tgid))
                if (e.flags & 0x4) or (int(e.pid) == int(e.tgid) and np.isnan(r["exit_ts"])):
                    r["exit_ts"] = float(e.ts)
        cols = ["pid", "ppid", "comm", "start_ts", "exit_ts", "exec", "threads", "trees", "attached"]
        return pd.DataFrame(list(rec.values()), columns=cols).sort_values("start_ts", ignore_index=True)
