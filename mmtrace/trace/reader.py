"""Reading a trace directory written by mmtrace.trace.writer.

Nothing read from a trace is unpickled or evaluated: metadata is JSON and
tables are Parquet.
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..events.decode import empty_frame
from ..events.schema import KINDS, LATER_FIELDS
from .damage import MODEL_KINDS, Damage, DamagedTraceWarning, TraceError, check_metadata, critical
from .writer import FORMAT, FORMAT_VERSION

__all__ = ["TraceFile", "TraceError", "IncompleteTraceWarning", "DamagedTraceWarning", "Damage"]

# anomalies() kinds that come from the rebuilt trees (not read from the kernel).
MODEL_FINDINGS = ("model_kernel_disagree", "negative_reservation", "unmapped_area_disagree")

# Columns shown as pandas categoricals: few distinct values, many rows.
_CATEGORICAL = {"fn", "syscall", "what", "comm", "perms", "when"}


# Multi-part tables of at least this many bytes of fixed-width columns are
# copied by _read_same_schema; smaller ones are concatenated by Arrow (the
# copy is cheap there, a thread pool is not).
_COPY_MIN_BYTES = 4 << 20
# Decoded bytes per Parquet read in _read_same_schema: a few columns at a
# time keep the transient buffers small and reused, and leave Arrow enough
# columns to decode in parallel.
_READ_BYTES = 16 << 20
# Threads copying into the output: spreading the page faults over the CPUs
# is what counts, more threads than that only cost their start.
_COPY_THREADS = max(1, min(8, pa.cpu_count()))


def _fixed_width(t: pa.DataType) -> bool:
    """Arrow types that to_pandas hands over as plain numpy arrays (no nulls)."""
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _row_width(schema: pa.Schema) -> int:
    """Bytes per row of the fixed-width columns of ``schema``."""
    return sum(f.type.byte_width for f in schema if _fixed_width(f.type))


def _open_part(p: Path, expect: dict[str, bool] | None) -> pq.ParquetFile:
    """One part, its footer read and its schema checked against ``expect``
    ({column: must be an integer}); raises on a damaged part.  Page checksums
    (written by mmtrace's writer) are verified on every read."""
    # ParquetFile, not read_table: no dataset layer (nor its import) per part.
    f = pq.ParquetFile(p, page_checksum_verification=True)
    # The footer has no checksum: its pandas metadata (column dtypes) must
    # still decode and name this schema's columns, or to_pandas fails later.
    kv = f.metadata.metadata or {}
    if b"pandas" in kv:
        pmeta = json.loads(kv[b"pandas"].decode("utf-8"))
        names = set(f.schema_arrow.names)
        if not isinstance(pmeta, dict) or not all(
                isinstance(c, dict) and (c.get("field_name") in names or c.get("field_name") is None
                                         or str(c.get("field_name", "")).startswith("__index_level_"))
                for c in pmeta.get("columns", [])):
            raise ValueError("the footer's pandas metadata does not match its columns")
    if expect:
        sch = f.schema_arrow
        for name, integer in expect.items():
            i = sch.get_field_index(name)
            if i < 0:
                raise ValueError(f"column {name!r} is missing")
            if integer and not pa.types.is_integer(sch.field(i).type):
                raise ValueError(f"column {name!r} is {sch.field(i).type}, not an integer")
    return f


def _expected_columns(kind: str) -> dict[str, bool]:
    """{column: must be an integer} every part of ``events/KIND`` must have: the
    schema's columns but those added later (LATER_FIELDS), which older traces lack."""
    later = LATER_FIELDS.get(kind, {})
    return {c: pd.api.types.is_integer_dtype(t) for c, t in empty_frame(kind).dtypes.items() if c not in later}


def _read_parts(parts: list[Path], expect: dict[str, bool] | None = None) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """The parts of one table as one DataFrame, rows in part order, and the
    damaged parts skipped, as (path, reason)."""
    files: list[tuple[Path, pq.ParquetFile]] = []
    bad: list[tuple[Path, str]] = []
    for p in parts:
        try:
            files.append((p, _open_part(p, expect)))
        except Exception as e:  # pyarrow raises several types for damaged files
            bad.append((p, _reason(e)))
    if (
        len(files) > 1
        and all(f.schema_arrow.equals(files[0][1].schema_arrow) for _, f in files[1:])
        and sum(f.metadata.num_rows for _, f in files) * _row_width(files[0][1].schema_arrow) >= _COPY_MIN_BYTES
    ):
        return _read_same_schema(files, bad), bad
    tables = []
    for p, f in files:
        try:
            with f:
                t = f.read()
            if t.num_rows != f.metadata.num_rows:
                raise ValueError(f"{t.num_rows} rows read, the footer says {f.metadata.num_rows}")
            tables.append(t)
        except Exception as e:
            bad.append((p, _reason(e)))
    if not tables:
        return pd.DataFrame(), bad
    try:
        # One Arrow table, then one conversion: zero-copy for the numeric
        # columns of a one-part table, ~50x faster than concatenating frames.
        return pa.concat_tables(tables, promote_options="default").to_pandas(split_blocks=True), bad
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True), bad
    except Exception:  # noqa: BLE001 - footer metadata damaged in a way the checks above missed
        return pd.concat([t.replace_schema_metadata(None).to_pandas() for t in tables], ignore_index=True), bad


def _reason(e: Exception) -> str:
    """A damaged part's error, in one short line."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _read_same_schema(files: list[tuple[Path, pq.ParquetFile]], bad: list[tuple[Path, str]]) -> pd.DataFrame:
    """_read_parts for several parts of one schema: the frame that concat_tables
    + to_pandas would give, with about half the memory traffic.

    Loading is dominated by memory, not by decoding: Arrow decodes the parts
    into one set of buffers, then to_pandas copies each column's chunks into
    a second one, and first-touched pages are expensive (on VMs whose free
    memory goes back to the host a fresh huge page can cost milliseconds).
    So the fixed-width columns are copied, a few at a time, into one
    preallocated buffer, each piece freed before the next is decoded (the
    allocator hands its buffers out again); columns the part's statistics
    show constant are filled without decoding; and to_pandas then takes the
    columns over zero-copy (so they share one buffer, freed with the last of
    them).  Other columns (dictionaries, strings) are few and small: they
    are kept as Arrow chunks and converted as before.
    """
    schema = files[0][1].schema_arrow  # with its pandas metadata, as concat_tables keeps the first
    n = sum(f.metadata.num_rows for _, f in files)
    # One allocation for all the columns, each 64-byte aligned as Arrow's own.
    start: dict[int, int] = {}
    size = 0
    for i, fld in enumerate(schema):
        if _fixed_width(fld.type):
            start[i] = size
            size += -(-n * fld.type.byte_width // 64) * 64
    whole = pa.allocate_buffer(size)
    plain = {
        i: np.frombuffer(whole, dtype=np.dtype(schema.field(i).type.to_pandas_dtype()), count=n, offset=at)
        for i, at in start.items()
    }
    rest: dict[int, list[pa.Array]] = {i: [] for i in range(len(schema)) if i not in plain}
    off = read = 0
    with ThreadPoolExecutor(max_workers=_COPY_THREADS) as pool:

        def run(jobs: list[tuple[np.ndarray, list[pa.Array] | int, int, int]]) -> None:
            # In threads (numpy copies without the GIL): the first touch of
            # the output's pages is most of the cost, and faulting them from
            # every CPU at once was measured several times cheaper, and far
            # steadier, than from one thread (here, on a 2-vCPU VM).
            list(pool.map(_copy_chunks, jobs) if _COPY_THREADS > 1 else map(_copy_chunks, jobs))

        for p, f in files:
            rows = f.metadata.num_rows
            kept = {i: len(c) for i, c in rest.items()}
            try:
                with f:
                    const = _constant_columns(f, schema, plain)
                    run([(plain[i], v, off, rows) for i, v in const.items()])
                    for group in _column_groups(schema, [i for i in range(len(schema)) if i not in const], rows):
                        # One call per group: its decoded buffers are freed on
                        # return, before the next group is read, so they are reused.
                        run(_group_jobs(f, schema, group, rows, off, plain, rest, kept, whole, start))
            except Exception as e:  # pyarrow raises several types for damaged files
                for i, k in kept.items():
                    del rest[i][k:]  # the next part overwrites this one's rows
                bad.append((p, _reason(e)))
                continue
            off += rows
            read += 1
    if not read:
        return pd.DataFrame()
    arrays = [
        pa.chunked_array(
            [pa.Array.from_buffers(fld.type, off, [None, whole.slice(start[i])])] if i in plain else rest[i],
            type=fld.type,
        )
        for i, fld in enumerate(schema)
    ]
    # One chunk, fixed width, no nulls: to_pandas keeps these arrays (zero-copy).
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas(split_blocks=True, self_destruct=True)


def _group_jobs(
    f: pq.ParquetFile,
    schema: pa.Schema,
    group: list[int],
    rows: int,
    off: int,
    plain: dict[int, np.ndarray],
    rest: dict[int, list[pa.Array]],
    kept: dict[int, int],
    whole: pa.Buffer,
    start: dict[int, int],
) -> list[tuple[np.ndarray, list[pa.Array], int, int]]:
    """Read columns ``group`` of part ``f`` (rows ``off``.. of the table): copy
    jobs for those of ``plain``; chunks of the others appended to ``rest``."""
    t = f.read(columns=[schema.field(i).name for i in group])
    if t.num_rows != rows:
        raise ValueError(f"{t.num_rows} rows read, the footer says {rows}")
    jobs = []
    for i, c in zip(group, t.columns):
        if i in plain and c.null_count:
            # to_pandas makes such a column float or object: give it the rows
            # so far as one chunk, then this part's and the next as chunks.
            del plain[i]
            rest[i] = [pa.Array.from_buffers(schema.field(i).type, off, [None, whole.slice(start[i])])]
            kept[i] = 1
        if i in plain:
            jobs.append((plain[i], c.chunks, off, rows))
        else:
            rest[i].extend(c.chunks)
    return jobs


def _column_groups(schema: pa.Schema, columns: list[int], rows: int) -> list[list[int]]:
    """``columns`` in runs of about _READ_BYTES decoded, at least two columns each."""
    groups: list[list[int]] = []
    size = _READ_BYTES
    for i in columns:
        t = schema.field(i).type
        width = t.byte_width if _fixed_width(t) else 8  # dictionaries, strings: indices or offsets, roughly
        if size + rows * width > _READ_BYTES and (not groups or len(groups[-1]) >= 2):
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += rows * width
    return groups


def _copy_chunks(job: tuple[np.ndarray, list[pa.Array] | int, int, int]) -> None:
    """Copy Arrow chunks (fixed width, no nulls), or ``rows`` times one value,
    into ``out`` from row ``pos`` on."""
    out, chunks, pos, rows = job
    if isinstance(chunks, int):
        out[pos : pos + rows] = chunks
        return
    for c in chunks:
        out[pos : pos + len(c)] = c.to_numpy(zero_copy_only=True)
        pos += len(c)


def _constant_columns(f: pq.ParquetFile, schema: pa.Schema, plain: dict[int, np.ndarray]) -> dict[int, int]:
    """Integer columns of ``plain`` that hold one value in part ``f``, with that
    value: from the part's statistics (min == max, no nulls), as the recorder's
    parts of a single-process trace often have (tgid, tid, cpu, mm...)."""
    md = f.metadata
    if md.num_columns != len(schema) or md.num_row_groups == 0:
        return {}  # not a flat schema: Parquet and Arrow columns differ
    out: dict[int, int] = {}
    for i in plain:
        if not pa.types.is_integer(schema.field(i).type) or md.schema.column(i).path != schema.field(i).name:
            continue
        values = set()
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(i).statistics
            if st is None or not st.has_min_max or not st.has_null_count or st.null_count or st.min != st.max:
                break
            values.add(st.min)
        else:
            if len(values) == 1:
                out[i] = values.pop()
    return out


class _CommLookup:
    """The comm of (tgid, ts), vectorised, from the instants processes got a name.

    Built from ``ts``, ``tgid``, ``comm`` in the order of _comm_timeline's
    rows before it sorts them (attach, fork, exec), so with its semantics: a
    (ts, tgid) named twice keeps the last name; categories are those of
    ``pd.Categorical`` of the names kept.  The answer is that of a backward
    ``merge_asof`` on ``ts`` by ``tgid``: the last name the process got at
    or before ``ts``; before its first name, that first name; a process
    never named gets code -1 (NaN).
    """

    def __init__(self, ts: np.ndarray, tgid: np.ndarray, comm: np.ndarray) -> None:
        # Group number of each named process, and ts -> rank among the
        # naming instants: rank(a) <= rank(b) iff a <= b for an instant a, so
        # (group, rank) keys sort as (tgid, ts) and fit in one int64.
        self.tgids, group = np.unique(tgid, return_inverse=True)
        group = group.ravel().astype(np.int64)
        instants = np.unique(ts)
        key = group * (len(instants) + 1) + np.searchsorted(instants, ts, side="right")
        order = np.argsort(key, kind="stable")
        key = key[order]
        last = np.append(key[1:] != key[:-1], True)  # equal keys: the last row wins
        order = order[last]
        self.instants = instants
        self.key, self.group, self.ts = key[last], group[order], ts[order]
        cats = pd.Categorical(pd.Series(comm[order], dtype=object).astype(str))
        self.dtype: pd.CategoricalDtype = cats.dtype
        self.code = cats.codes.astype(np.int64)
        # First name of each group: its lowest key (keys are unique now).
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
            # One process (the usual single-command recording): its name
            # changes at a few instants, so fill the slices between them.
            out = np.full(len(ts), -1, dtype=code_dtype)
            g = int(np.searchsorted(self.tgids, lo))
            if g == len(self.tgids) or self.tgids[g] != lo:
                return out
            sel = self.group == g
            starts = np.searchsorted(ts, self.ts[sel], side="left")
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


class IncompleteTraceWarning(UserWarning):
    """The recording did not stop cleanly; data up to the last flush is there."""


def _part_number(p: Path) -> int:
    try:
        return int(p.name[len("part-") : -len(".parquet")])
    except ValueError:
        return -1


def _ts_stats(f: pq.ParquetFile) -> tuple[int, int] | None:
    """(min, max) of the ``ts`` column from a part's footer statistics, or None."""
    md = f.metadata
    i = f.schema_arrow.get_field_index("ts")
    if i < 0 or md.num_row_groups == 0 or md.num_columns != len(f.schema_arrow):
        return None
    lo = hi = None
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(i).statistics
        if st is None or not st.has_min_max:
            return None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return int(lo), int(hi)


class TraceFile:
    """Raw access to one trace directory: metadata and tables as DataFrames.

    Raises :class:`TraceError` (only) when ``path`` is not a readable trace.
    What could not be read of a readable one is in :attr:`damage` and
    :meth:`gaps`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.metadata, self._meta_damage = check_metadata(self.path, FORMAT, FORMAT_VERSION)
        except OSError as e:  # is_dir()/exists() on a path we may not search
            raise TraceError(f"{self.path}: cannot read ({e.strerror or e})") from e
        meta = self.metadata
        if not meta.get("complete"):
            warnings.warn(
                f"{self.path}: the recording did not stop cleanly "
                f"({meta.get('stop_reason') or 'killed?'}); events up to its last flush are kept",
                IncompleteTraceWarning,
                stacklevel=2,
            )
        self._cache: dict[str, pd.DataFrame] = {}
        # table -> [(part, reason)] of the parts that could not be read
        self._bad: dict[str, list[tuple[Path, str]]] = {}
        self._unlisted: dict[str, list[tuple[Path, str]]] = {}
        # table -> (rows read, {part number: (min ts, max ts) | None}) of its readable parts
        self._scanned: dict[str, tuple[int, dict[int, tuple[int, int] | None]]] = {}

    # -- tables ---------------------------------------------------------
    def _parts(self, name: str) -> list[Path]:
        d = self.path / name
        try:
            return sorted(d.glob("part-*.parquet"), key=_part_number) if d.is_dir() else []
        except OSError as e:
            self._unlisted[name] = [(d, f"cannot list the parts ({e.strerror or e})")]
            return []

    def table(self, name: str) -> pd.DataFrame:
        """All parts of table ``name`` (e.g. ``events/syscall``) concatenated, in write order.

        A damaged part is skipped (warning naming the file; it is in
        :attr:`damage`); the others are still returned.  An event kind with
        no rows has its typed columns (see :func:`mmtrace.events.decode.empty_frame`).
        """
        if name in self._cache:
            return self._cache[name]
        kind = name[len("events/"):] if name.startswith("events/") else None
        expect = _expected_columns(kind) if kind in KINDS else None
        df, bad = _read_parts(self._parts(name), expect)
        self._bad[name] = self._unlisted.get(name, []) + bad
        for p, why in bad:
            warnings.warn(f"{p}: damaged part skipped ({why})", DamagedTraceWarning, stacklevel=3)
        if kind in KINDS and len(df) == 0:
            df = empty_frame(kind)
        elif kind in KINDS:
            for c, missing in LATER_FIELDS.get(kind, {}).items():
                if c not in df.columns:  # a trace from before the field was added
                    df[c] = np.full(len(df), missing, dtype=empty_frame(kind)[c].dtype)
        for c in _CATEGORICAL & set(df.columns):
            if not isinstance(df[c].dtype, pd.CategoricalDtype):  # dictionary columns arrive as such
                df[c] = df[c].astype("category")
        self._cache[name] = df
        return df

    @property
    def kinds(self) -> list[str]:
        """Event kinds present in this trace."""
        d = self.path / "events"
        try:
            return sorted(p.name for p in d.iterdir() if p.is_dir() and p.name in KINDS) if d.is_dir() else []
        except OSError:
            return []

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
        ``ts`` is CLOCK_MONOTONIC in ns; addresses are uint64.  A kind with
        no events has the same columns, empty.
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

    # -- damage -----------------------------------------------------------
    def unreadable_parts(self, kind: str) -> list[Path]:
        """Parts of ``events/KIND`` that could not be read (each part checked once)."""
        name = f"events/{kind}"
        self._scan(name)
        return [p for p, _ in self._bad.get(name, [])]

    def known_unreadable_parts(self, kind: str) -> list[Path]:
        """The parts of ``events/KIND`` known unreadable, checking only what is cheap
        (each footer and schema), not the data: for the windowed model, which
        verifies the page checksums of the rest as it reads them."""
        name = f"events/{kind}"
        if name in self._scanned or name in self._cache:
            return [p for p, _ in self._bad.get(name, [])]
        expect = _expected_columns(kind)
        bad = []
        for p in self._parts(name):
            try:
                _open_part(p, expect).close()
            except Exception:  # noqa: BLE001 - pyarrow raises several types for damaged files
                bad.append(p)
        return bad

    def _scan(self, name: str) -> tuple[int, dict[int, tuple[int, int] | None]]:
        """(rows, {part number: ts range}) of table ``name``'s readable parts; fills
        ``_bad``.  Reads each part once, keeping nothing, unless the table is
        loaded already: the windowed model must not have to load whole tables."""
        if name in self._scanned:
            return self._scanned[name]
        kind = name[len("events/"):] if name.startswith("events/") else None
        expect = _expected_columns(kind) if kind in KINDS else None
        parts = self._parts(name)
        rows, stats = 0, {}
        if name in self._cache:
            bad = {p for p, _ in self._bad.get(name, [])}
            good = [p for p in parts if p not in bad]
            rows = len(self._cache[name])
        else:
            good, bad_list = [], list(self._unlisted.get(name, []))
            for p in parts:
                try:
                    with _open_part(p, expect) as f:
                        for g in range(f.metadata.num_row_groups):
                            t = f.read_row_group(g)
                            if t.num_rows != f.metadata.row_group(g).num_rows:
                                raise ValueError(f"{t.num_rows} rows read, the footer says "
                                                 f"{f.metadata.row_group(g).num_rows}")
                        rows += f.metadata.num_rows
                    good.append(p)
                except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
                    bad_list.append((p, _reason(e)))
                    warnings.warn(f"{p}: damaged part skipped ({_reason(e)})", DamagedTraceWarning, stacklevel=3)
            self._bad[name] = bad_list
        for p in good:
            try:
                with pq.ParquetFile(p) as f:
                    stats[_part_number(p)] = _ts_stats(f)
            except Exception:  # noqa: BLE001 - read fine a moment ago; no range then
                stats[_part_number(p)] = None
        self._scanned[name] = (rows, stats)
        return rows, stats

    @cached_property
    def damage(self) -> list[Damage]:
        """Everything of the trace that could not be read, one :class:`Damage` each
        (empty for an intact trace).  Reads every table once (they are kept)."""
        out = list(self._meta_damage)
        counted = self.metadata.get("events") or {}
        kinds = sorted(set(self.kinds) | {k for k in counted if k in KINDS})
        t_lo, t_hi = self._span()
        for kind in kinds:
            out += self._table_damage(f"events/{kind}", counted.get(kind), t_lo, t_hi)
        for name in ("procfs/attach", "procfs/maps", "procfs/kmsg", "procfs/hugepages"):
            out += self._table_damage(name, None, t_lo, t_hi)
        try:
            tmps = sorted(self.path.rglob(".part-*.tmp"))
        except OSError:
            tmps = []
        for p in tmps:
            out.append(Damage("leftover_tmp", str(p.parent.relative_to(self.path)), str(p),
                              "a part the recorder never finished writing (killed while flushing?): ignored"))
        return out

    def _table_damage(self, name: str, counted, t_lo: int, t_hi: int) -> list[Damage]:
        rows, stats = self._scan(name)
        parts = self._parts(name)
        bad = dict(self._bad.get(name, []))
        good = sorted(stats)

        def span(n: int) -> tuple[int, int]:
            # Events of part n lie between the last ts of the readable part
            # before it and the first ts of the readable part after it.
            before = [stats[g][1] for g in good if g < n and stats[g]]
            after = [stats[g][0] for g in good if g > n and stats[g]]
            return (before[-1] if before else t_lo), (after[0] if after else t_hi)

        out = []
        for p, why in bad.items():
            n = _part_number(p)
            lo, hi = span(n) if n >= 0 else (t_lo, t_hi)
            out.append(Damage("unreadable_part", name, str(p), f"unreadable part skipped ({why})", lo, hi))
        numbers = sorted({_part_number(p) for p in parts} - {-1})
        if numbers:
            have = set(numbers)
            holes = [n for n in range(1, min(numbers[-1], len(numbers) + 1000) + 1) if n not in have]
            if numbers[-1] > len(numbers) + 1000:  # a renamed or foreign file: do not count to it
                holes = holes[:1000]
            runs: list[list[int]] = []  # consecutive missing numbers: one Damage each
            for n in holes:
                if runs and runs[-1][1] == n - 1:
                    runs[-1][1] = n
                else:
                    runs.append([n, n])
            for a, b in runs:
                lo, hi = span(a)[0], span(b)[1]
                what = f"part-{a:06d}.parquet" + (f" .. part-{b:06d}.parquet" if b > a else "")
                out.append(Damage("missing_part", name, str(self.path / name / what),
                                  f"{b - a + 1} part(s) missing (deleted?)" if b > a else "part missing (deleted?)",
                                  min(lo, hi), max(lo, hi)))
        if counted and not out and name.startswith("events/"):
            if rows == 0:
                out.append(Damage("missing_table", name, str(self.path / name),
                                  f"no events, metadata.json counted {counted:,} (deleted?)", t_lo, t_hi))
            elif rows < counted and self.complete:
                last = max((stats[g][1] for g in good if stats[g]), default=t_lo)
                out.append(Damage("missing_rows", name, str(self.path / name),
                                  f"{rows:,} events read, metadata.json counted {counted:,} "
                                  "(a last part deleted?)", last, t_hi))
        return out

    @property
    def damaged(self) -> bool:
        """True when part of the trace could not be read (see :attr:`damage`)."""
        return bool(self.damage)

    def gaps(self) -> pd.DataFrame:
        """Where events may be missing: one row per damaged stretch of an event kind.

        Columns: ``kind``, ``ts_from``, ``ts_to`` (CLOCK_MONOTONIC ns: the last
        readable event before and the first after, from the neighbouring
        parts' ts statistics; the recording's start / last event at the
        ends), ``what`` and ``path`` (see :class:`Damage`).
        """
        rows = [(d.kind, d.ts_from, d.ts_to, d.what, d.path) for d in self.damage
                if d.kind and d.ts_from is not None]
        df = pd.DataFrame(rows, columns=["kind", "ts_from", "ts_to", "what", "path"])
        return df.astype({"ts_from": "int64", "ts_to": "int64"}).sort_values(["ts_from", "kind"], ignore_index=True)

    def model_reliable_until(self) -> int | None:
        """The instant after which the rebuilt VMA trees may be stale (the first gap in
        an event kind the model replays, like lost events), or None when nothing is
        missing; the recording's start when metadata the model needs is damaged."""
        # Without the attach snapshots the initial trees are unknown: nothing is founded.
        if critical(self.damage) or any(d.table in ("procfs/maps", "procfs/attach") for d in self.damage):
            return self._span()[0]
        starts = [d.ts_from for d in self.damage if d.kind in MODEL_KINDS and d.ts_from is not None]
        return min(starts) if starts else None

    def after_gaps(self, df: pd.DataFrame, ts: str = "ts") -> pd.Series:
        """True for the rows of ``df`` at or after :meth:`model_reliable_until`
        (what the model says there may be stale)."""
        cut = self.model_reliable_until()
        if cut is None or len(df) == 0:
            return pd.Series(False, index=df.index)
        return pd.Series(df[ts].to_numpy().astype(np.int64) >= cut, index=df.index)

    def drop_stale_findings(self, findings: pd.DataFrame) -> pd.DataFrame:
        """``findings`` (rows of ``anomalies()``: ts, pid, severity, kind,
        explanation) without the model findings at or after
        :meth:`model_reliable_until`, which a gap makes unfounded; one
        ``trace_damaged`` row says where and how many were left out.
        Findings read from the kernel itself (its counters, its log) stay."""
        cut = self.model_reliable_until()
        if cut is None:
            return findings
        stale = self.after_gaps(findings) & findings["kind"].isin(MODEL_FINDINGS)
        first = next((d for d in self.damage if d.kind in MODEL_KINDS and d.ts_from == cut), self.damage[0])
        note = {
            "ts": cut, "pid": -1, "severity": "warning", "kind": "trace_damaged",
            "explanation": (f"{first}. The rebuilt VMA trees may be stale from here on (as after lost events), "
                            f"so model findings after this instant are not reported ({int(stale.sum())} left out)."),
        }
        kept = findings[~stale]
        return pd.concat([pd.DataFrame([note], columns=findings.columns), kept] if len(kept) else
                         [pd.DataFrame([note], columns=findings.columns)], ignore_index=True)

    def _span(self) -> tuple[int, int]:
        """(first, last) instant of the recording: start_ns (or the first event) and
        the last event (or stop_ns); see :attr:`end_ns`."""
        lo, hi = self._events_span
        start = self.metadata.get("start_ns")
        return (int(start) if start else lo), self.end_ns

    @cached_property
    def _events_span(self) -> tuple[int, int]:
        """(first, last) ts of the events read (0, 0 without events), from the parts' statistics."""
        lo, hi = [], []
        for kind in self.kinds:
            name = f"events/{kind}"
            stats = self._scan(name)[1]
            if all(stats.values()):
                lo += [r[0] for r in stats.values()]
                hi += [r[1] for r in stats.values()]
            else:  # a part without statistics: from the rows
                ts = self.table(name)["ts"].to_numpy() if len(self.table(name)) else []
                if len(ts):
                    lo.append(int(ts.min()))
                    hi.append(int(ts.max()))
        return (min(lo) if lo else 0), (max(hi) if hi else 0)

    # -- summaries --------------------------------------------------------
    @property
    def end_ns(self) -> int:
        """When the recording ended: stop_ns for a clean stop; for an incomplete
        trace the last event read (stop_ns there is only the last flush)."""
        m = self.metadata
        last = self._events_span[1]
        if self.complete and m.get("stop_ns"):
            return int(m["stop_ns"])
        return max(last, int(m.get("start_ns") or 0)) if last else int(m.get("stop_ns") or m.get("start_ns") or 0)

    @property
    def duration_s(self) -> float:
        """Seconds from start to :attr:`end_ns` (never negative)."""
        start = int(self.metadata.get("start_ns") or self._events_span[0] or 0)
        return max(0, self.end_ns - start) / 1e9

    @property
    def lost_known(self) -> bool:
        """False when the lost counts cannot be trusted: the recording did not stop
        cleanly (counts after its last flush were never written) or they are missing."""
        return self.complete and isinstance(self.metadata.get("lost"), dict)

    @property
    def lost(self) -> dict[str, int]:
        """Events the kernel could not hand over (ring buffer full), by source
        (as far as counted: see :attr:`lost_known`)."""
        return {k: int(v) for k, v in (self.metadata.get("lost") or {}).items()}

    @property
    def complete(self) -> bool:
        return bool(self.metadata.get("complete"))

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
        """_comm_timeline indexed for events(); None when no process has a name.

        From the same rows, without building the timeline frame: its pandas
        concat, sort and drop_duplicates took ~5 ms, a tenth of loading the
        biggest kind of a 1 M-event trace.
        """
        ts, tgid, comm = [], [], []

        def add(df: pd.DataFrame, pid: str) -> None:
            ts.append(df["ts"].to_numpy().astype(np.int64))
            tgid.append(df[pid].to_numpy().astype(np.int64))
            comm.append(df["comm"].to_numpy(dtype=object))

        att = self.table("procfs/attach")
        if len(att):
            add(att, "pid")
        proc = self.raw_events("proc")
        if len(proc):
            what = proc["what"].to_numpy(dtype=object)
            add(proc[what == "fork"], "child_tgid")
            add(proc[what == "exec"], "tgid")
        if not ts or not sum(map(len, ts)):
            return None
        return _CommLookup(np.concatenate(ts), np.concatenate(tgid), np.concatenate(comm))

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
