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
        tables = []
        for p in parts:
            try:
                tables.append(pq.read_table(p))
            except Exception as e:  # pyarrow raises several types for damaged files
                warnings.warn(f"{p}: damaged part skipped ({e})", stacklevel=2)
        if not tables:
            df = pd.DataFrame()
        else:
            try:
                # One Arrow table, then one conversion: zero-copy for the
                # numeric columns, ~50x faster than concatenating frames.
                df = pa.concat_tables(tables, promote_options="default").to_pandas(split_blocks=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        for c in _CATEGORICAL & set(df.columns):
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
        names = self._comm_timeline
        if len(names) == 0:
            return df.assign(comm=pd.Categorical([""] * len(df)))
        cats = pd.Categorical(names["comm"])
        right = pd.DataFrame({"ts": names["ts"], "tgid": names["tgid"], "code": cats.codes.astype(np.int32)})
        # raw_events() is sorted by ts, so merge_asof keeps the rows' order.
        left = pd.DataFrame({"ts": df["ts"].to_numpy(np.int64), "tgid": df["tgid"].to_numpy(np.int64)})
        m = pd.merge_asof(left, right, on="ts", by="tgid", direction="backward")
        code = m["code"]
        if code.isna().any():
            # Before the first known name of a process, use that first name.
            first = right.groupby("tgid")["code"].first()
            code = code.fillna(m["tgid"].map(first))
        code = code.fillna(-1).to_numpy(np.int32)
        out = df.copy(deep=False)
        out["comm"] = pd.Categorical.from_codes(code, categories=cats.categories)
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
