"""The report tables as CSV text made by Arrow kernels, byte for byte what
``csv_frame(df).to_csv(path, index=False)`` writes.

``DataFrame.to_csv`` and :func:`mmtrace.report.export.csv_frame` format every
cell in Python (~1 µs a cell: 20 s for the 843k changes of a 2.5 M-event
trace).  Here each column becomes one Arrow string array with numpy/pyarrow
kernels (addresses through :func:`mmtrace.model.tables.hex_text`, lists
flattened once and joined with ``binary_join``), quoted as Python's csv
module does under ``QUOTE_MINIMAL`` (a cell holding ``,``, ``"``, CR or LF),
and the rows joined into one buffer: so a table can be appended window by
window (:class:`CsvAppender`) and the files stay what readers of the old ones
expect.  Columns this writer does not know (objects that are neither text
nor lists) raise :class:`Unsupported`; callers then use the Python path.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..model.tables import hex_text
from .frames import ADDRESS_ARGS, RETURNS_ADDRESS

__all__ = ["Unsupported", "csv_columns", "csv_bytes", "CsvAppender", "write_csv"]

_MASK = (1 << 64) - 1
_ADDR = {"start", "end", "lo", "hi", "at", "vma", "tree", "trees"}
_VMA_LISTS = {"before", "after"}
_NEEDS_QUOTE = r'[,"\r\n]'
_TEXT_TYPES = {str, type(None)}
_START_END, _PERMS, _VMA = itemgetter("start", "end"), itemgetter("perms"), itemgetter("vma")


class Unsupported(TypeError):
    """A column this writer cannot format (the caller falls back to ``to_csv``)."""


def _u64(values) -> np.ndarray:
    """Integers as uint64, negatives two's complement (``int(v) & (1 << 64) - 1``)."""
    a = np.asarray(values)
    if a.dtype.kind == "u":
        return a.astype(np.uint64, copy=False)
    if a.dtype.kind == "i":
        return a.astype(np.int64, copy=False).view(np.uint64)
    return np.array([int(v) & _MASK for v in a], dtype=np.uint64)


def _hex(values) -> pa.Array:
    return hex_text(_u64(values))


def _dec(values) -> pa.Array:
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        a = np.array([int(v) for v in a], dtype=np.int64)
    return pa.array(a).cast(pa.string())


def _list_join(lens: np.ndarray, flat_text: pa.Array) -> pa.Array:
    offs = np.zeros(len(lens) + 1, dtype=np.int32)
    np.cumsum(lens, out=offs[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offs), flat_text), "; ")


def _vma_cells(col: list) -> pa.Array:
    """``0xS-0xE perms[ vma=0x..]`` per VMA, "; "-joined per row: (start, end[, perms]) tuples
    (no ``vma=``) or {start, end, perms, vma} dicts (``vma=`` when the pointer is not 0),
    as ``export._vma_text``."""
    lens = np.fromiter(map(len, col), dtype=np.int64, count=len(col))
    flat = list(chain.from_iterable(col))
    if not flat:
        return pa.array([""] * len(col), type=pa.string())
    if isinstance(flat[0], dict):
        try:  # dicts with every key (splits()/merges()): the ints read without a Python loop
            n = len(flat)
            se = np.fromiter(chain.from_iterable(map(_START_END, flat)), dtype=np.uint64, count=2 * n).reshape(n, 2)
            st, en = se[:, 0], se[:, 1]
            pe = list(map(_PERMS, flat))
            ptr = np.fromiter(map(_VMA, flat), dtype=np.uint64, count=n)
        except (KeyError, TypeError, ValueError, OverflowError):
            st = _u64([d["start"] for d in flat])
            en = _u64([d["end"] for d in flat])
            pe = [d.get("perms", "") for d in flat]
            ptr = _u64([d.get("vma") or 0 for d in flat])
        text = pc.binary_join_element_wise(hex_text(st), "-", hex_text(en), " ", pa.array(pe, type=pa.string()), "")
        with_ptr = pc.binary_join_element_wise(text, " vma=", hex_text(ptr), "")
        text = pc.if_else(pa.array(ptr != 0), with_ptr, text)
    else:
        if any(len(v) != 3 for v in flat):
            raise Unsupported("VMA tuples that are not (start, end, perms)")
        st, en, pe = zip(*flat)
        n = len(flat)
        text = pc.binary_join_element_wise(hex_text(np.fromiter(st, dtype=np.uint64, count=n)), "-",
                                           hex_text(np.fromiter(en, dtype=np.uint64, count=n)), " ",
                                           pa.array(pe, type=pa.string()), "")
    return _list_join(lens, text)


def _text_cells(col: pd.Series) -> pa.Array:
    """A column of text as to_csv writes it: None/NaN as ""."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        arr = pa.array(col.astype(object).where(col.notna(), None).tolist(), type=pa.string())
        return pc.fill_null(arr, "")
    vals = col.tolist()
    try:
        arr = pa.array(vals, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise Unsupported(f"column {col.name!r}: {e}") from None
    return pc.fill_null(arr, "")


def _column(df: pd.DataFrame, c: str, sc: list[str] | None, sc_arr: pa.Array | None) -> pa.Array:
    """Column ``c`` of ``df`` as its CSV cells (before quoting), as csv_frame + to_csv make them."""
    col = df[c]
    kind = col.dtype.kind
    if sc is not None and ((c.startswith("arg") and c[3:].isdigit()) or c == "ret"):
        # csv_frame: "" for kernel paths; hex where the row's syscall takes (returns) an address
        if c == "ret":
            is_addr = pc.is_in(sc_arr, pa.array(sorted(RETURNS_ADDRESS)))
            is_addr = pc.and_(is_addr, pa.array(np.asarray([int(v) >= 0 for v in col.tolist()]) if kind not in "iu"
                                                 else col.to_numpy() >= 0))
        else:
            i = int(c[3:])
            takes = sorted(s for s, ix in ADDRESS_ARGS.items() if i in ix)
            is_addr = pc.is_in(sc_arr, pa.array(takes, type=pa.string()))
        text = pc.if_else(is_addr, _hex(col.to_numpy()), _dec(col.to_numpy()))
        return pc.if_else(pc.equal(sc_arr, ""), "", text)
    if c in _VMA_LISTS and kind == "O":
        return _vma_cells(col.tolist())
    if c in _ADDR:
        if kind == "O":
            vals = col.tolist()
            if all(isinstance(x, (list, tuple)) for x in vals):
                lens = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
                flat = list(chain.from_iterable(vals))
                return _list_join(lens, _hex(flat) if flat else pa.array([], type=pa.string()))
            if any(isinstance(x, (list, tuple)) for x in vals):
                raise Unsupported(f"column {c!r}: lists mixed with numbers")
            return _hex(vals)
        return _hex(col.to_numpy())
    if kind in "iu":
        if isinstance(col.dtype, pd.api.extensions.ExtensionDtype):  # Int64 with <NA>: "" as to_csv
            return pc.fill_null(pa.array(col, from_pandas=True).cast(pa.string()), "")
        return _dec(col.to_numpy())
    if kind == "b":
        return pc.if_else(pa.array(col.to_numpy()), "True", "False")
    if kind == "O":
        vals = col.tolist()
        if vals and isinstance(vals[0], (list, tuple)):
            if not all(isinstance(x, (list, tuple)) for x in vals):
                raise Unsupported(f"column {c!r}: lists mixed with other values")
            lens = np.fromiter(map(len, vals), dtype=np.int64, count=len(vals))
            flat = [str(v) for v in chain.from_iterable(vals)]
            return _list_join(lens, pa.array(flat, type=pa.string()))
        if not set(map(type, vals)) <= _TEXT_TYPES and any(
                not (isinstance(x, str) or x is None or (isinstance(x, float) and x != x)) for x in vals):
            raise Unsupported(f"column {c!r}: values that are not text")
        return _text_cells(col)
    if isinstance(col.dtype, pd.CategoricalDtype):
        return _text_cells(col)
    raise Unsupported(f"column {c!r} of dtype {col.dtype}")


def _quote(a: pa.Array) -> pa.Array:
    """Quote as csv.QUOTE_MINIMAL does (doubling quotes inside)."""
    data = a.buffers()[2] if a.type in (pa.string(), pa.large_string()) else None
    if data is not None:
        b = np.frombuffer(data, dtype=np.uint8)
        if not ((b == 44) | (b == 34) | (b == 13) | (b == 10)).any():  # no , " CR LF in any cell
            return a
    needs = pc.match_substring_regex(a, _NEEDS_QUOTE)
    if not pc.any(needs).as_py():
        return a
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(a, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, a)


def csv_columns(df: pd.DataFrame, cells: dict | None = None) -> list[pa.Array]:
    """Every column of ``df`` as its quoted CSV cells (what csv_frame + to_csv write).
    ``cells``: {column: its cells (unquoted), already made} (e.g. ``before``/``after``
    of changes from the numbers of ``before_vmas``/``after_vmas``:
    :func:`mmtrace.model.tables.vma_text`)."""
    sc = sc_arr = None
    if "syscall" in df.columns:
        sc = ["" if s is None or s != s or str(s) in ("", "nan", "<NA>") else str(s) for s in df["syscall"].tolist()]
        sc_arr = pa.array(sc, type=pa.string())
    cells = cells or {}
    return [_quote(cells[c] if c in cells else _column(df, c, sc, sc_arr)) for c in df.columns]


def _header(df: pd.DataFrame) -> bytes:
    return (",".join(_quote(pa.array([str(c) for c in df.columns], type=pa.string())).to_pylist()) + "\n").encode()


def csv_bytes(df: pd.DataFrame, header: bool = True, cells: dict | None = None) -> bytes:
    """The CSV text of ``df`` (rows ending in ``\\n``), as ``csv_frame(df).to_csv(index=False)``;
    ``cells``: as :func:`csv_columns`."""
    head = _header(df) if header else b""
    if len(df) == 0:
        return head
    cols = csv_columns(df, cells)
    cols[-1] = pc.binary_join_element_wise(cols[-1], "\n", "")
    rows = pc.binary_join_element_wise(*cols, ",") if len(cols) > 1 else cols[0]
    rows = rows.cast(pa.large_string())
    offs = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset: rows.offset + len(rows) + 1]
    data = rows.buffers()[2]
    return head + data.to_pybytes()[int(offs[0]): int(offs[-1])] if offs[0] else head + memoryview(data)[: int(offs[-1])].tobytes()


class CsvAppender:
    """One CSV file written chunk by chunk: the header with the first chunk (or at
    :meth:`close` when no chunk came, from ``columns``)."""

    def __init__(self, path: str | Path, columns: list[str] | None = None) -> None:
        self.path = Path(path)
        self.columns = columns
        self.rows = 0
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._head = False

    def write(self, df: pd.DataFrame, cells: dict | None = None) -> None:
        if not self._head:
            self._f.write(_header(df))
            self._head = True
        self._f.write(csv_bytes(df, header=False, cells=cells))
        self.rows += len(df)

    def close(self) -> None:
        if not self._head and self.columns is not None:
            self._f.write((",".join(self.columns) + "\n").encode() if self.columns else b"\n")
        self._f.close()


def write_csv(df: pd.DataFrame, path: str | Path, chunk: int = 200_000) -> None:
    """``csv_frame(df).to_csv(path, index=False)``, faster: chunk by chunk through :func:`csv_bytes`."""
    with open(path, "wb") as f:
        f.write(_header(df))
        for i in range(0, len(df), chunk):
            f.write(csv_bytes(df.iloc[i:i + chunk], header=False))
