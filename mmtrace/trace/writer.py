"""Writing a trace directory, chunk by chunk, so a crash loses little.

Layout (format 1)::

    TRACE/
      metadata.json                  self-description; "complete": true only after a clean stop
      events/<kind>/part-NNNNNN.parquet   one table per event kind (mmtrace.events.schema)
      procfs/maps/part-NNNNNN.parquet     /proc/PID/maps snapshots, CLOCK_MONOTONIC stamped
      procfs/attach/part-NNNNNN.parquet   processes already running when tracing began

Parts are LZ4-compressed (Parquet's LZ4_RAW): the size of Snappy here
(about 70% larger than zstd), five times faster to read back than zstd,
and the cheapest to write on the traced host.  Only dictionary and string
columns are dictionary-encoded: Parquet's default dictionary-encodes every
column, which for the integer columns (timestamps, addresses) costs most
of the write and, behind LZ4, saves nothing (``benchmarks/drain.py``).  Every
page carries a CRC32 (``write_page_checksum``) that the reader verifies, so
a corrupted part is reported as damaged instead of read as wrong events.

Every file is written under a temporary name and renamed into place, so a
reader never sees half a part and a ``kill -9`` loses only what was not yet
flushed (the recorder flushes every second).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from pathlib import Path

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TraceWriter", "write_part", "FORMAT", "FORMAT_VERSION", "DiskFull"]

FORMAT = "mmtrace-trace"
FORMAT_VERSION = 1


class DiskFull(OSError):
    """Writing the trace failed for lack of space; what was written before stays valid."""


def _part_options(schema: pa.Schema) -> dict:
    dict_cols = [f.name for f in schema
                 if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return dict(compression="lz4", use_dictionary=dict_cols, write_page_checksum=True)


def write_part(table: pa.Table, path: str | os.PathLike) -> None:
    """Write one part as the recorder does (see the module docstring)."""
    pq.write_table(table, path, **_part_options(table.schema))


class TraceWriter:
    """Create ``path`` and append parts to it.

    ``owner`` is a ``(uid, gid)`` to give every file and directory to (the
    sudo user), or None to leave them to the writing user.
    """

    def __init__(self, path: str | os.PathLike, *, owner: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.owner = owner
        self._parts: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.bytes_written = 0
        self._mkdir(self.path)

    def _chown(self, p: Path) -> None:
        if self.owner is not None:
            try:
                os.chown(p, *self.owner)
            except OSError:
                pass

    def _mkdir(self, p: Path) -> None:
        if not p.exists():
            # Give each level this call creates to the owner, not just the
            # leaf: 'sudo mmtrace record -o a/b/c' leaves no root-owned a/, a/b/.
            new = [q for q in [p, *p.parents] if not q.exists()]
            p.mkdir(parents=True)
            for q in new:
                self._chown(q)

    def _atomic(self, dest: Path, write) -> None:
        tmp = dest.with_name("." + dest.name + ".tmp")
        try:
            write(tmp)
            os.replace(tmp, dest)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(e.errno, f"no space left writing {dest}") from e
            raise
        self._chown(dest)
        self.bytes_written += dest.stat().st_size

    def append(self, table: str, df: pd.DataFrame | pa.Table) -> None:
        """Write ``df`` (a DataFrame, or an Arrow table such as
        :func:`mmtrace.events.decode.to_arrow` makes: the recorder never
        imports pandas) as the next part of ``table`` (e.g. ``events/tree_write``)."""
        if df is None or len(df) == 0:
            return
        at = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        self._atomic(self._next_part(table), lambda p: write_part(at, p))
        self.rows[table] = self.rows.get(table, 0) + len(df)

    def append_pieces(self, table: str, pieces: Iterable[pa.Table]) -> int:
        """Write ``pieces`` as the next part of ``table``, one row group each,
        taking each piece from the iterator only once the one before is written
        (the recorder's flush: :meth:`mmtrace.capture.session.Session.tables`).
        A piece whose schema differs from the part's (a categorical column
        that needed wider codes) starts a new part.  Returns the rows written."""
        it = (p for p in pieces if len(p))
        held = [next(it, None)]  # the piece to write next: held only until written
        total = 0
        while held[0] is not None:
            schema = held[0].schema
            rows = 0

            def write(p: Path) -> None:
                nonlocal rows
                with pq.ParquetWriter(p, schema, **_part_options(schema)) as w:
                    while held[0] is not None and held[0].schema == schema:
                        w.write_table(held[0])
                        rows += len(held[0])
                        held[0] = None  # freed before the next piece is decoded
                        held[0] = next(it, None)

            self._atomic(self._next_part(table), write)
            self.rows[table] = self.rows.get(table, 0) + rows
            total += rows
        return total

    def _next_part(self, table: str) -> Path:
        """The path of ``table``'s next part (its directory made)."""
        d = self.path / table
        self._mkdir(d)
        n = self._parts[table] = self._parts.get(table, 0) + 1
        return d / f"part-{n:06d}.parquet"

    def write_metadata(self, meta: dict) -> None:
        """Replace metadata.json (atomically)."""
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
        text = json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"
        self._atomic(self.path / "metadata.json", lambda p: p.write_text(text))
