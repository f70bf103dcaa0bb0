"""Tables of a report written as CSV (readable) or Parquet (typed).

In CSV, addresses (``start``, ``end``, ``lo``, ``hi``, ``at``, ``vma``,
``tree``, ``trees`` and the syscall arguments and return values that are
addresses: see :data:`mmtrace.report.frames.ADDRESS_ARGS`) are ``0x`` hex
strings, which ``int(x, 0)`` reads back (every value of an address column,
0 included, is hex; the syscall columns of kernel paths are empty); lists become ``"; "``-separated
text; timestamps stay integer nanoseconds (CLOCK_MONOTONIC, as in the trace).
In Parquet every number stays an integer (addresses uint64) and lists stay
lists (of integers, or of structs for VMAs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .frames import ADDRESS_ARGS, RETURNS_ADDRESS, report_data

__all__ = ["TABLES", "export", "table", "csv_frame", "arrow_table", "write_csv", "FORMATS"]

FORMATS = ("csv", "parquet")

#: name -> ReportData method; the files ``NAME.csv`` / ``NAME.parquet``.
TABLES = {
    "processes": "processes",
    "changes": "changes",
    "splits": "splits",
    "merges": "merges",
    "anomalies": "anomalies",
    "hugetlb": "hugetlb",
    "vmas": "vmas",
}

# Header of a table that could not be computed (so readers still find its columns).
_FALLBACK_COLUMNS = {
    "anomalies": ["ts", "pid", "comm", "severity", "kind", "explanation"],
    "splits": ["ts", "ts_end", "pid", "tid", "comm", "cause", "syscall", "arg0", "arg1", "arg2", "arg3", "ret",
               "call", "kind", "count", "at", "before", "after", "writes"],
}
_FALLBACK_COLUMNS["merges"] = _FALLBACK_COLUMNS["splits"]

# Columns that always hold addresses (or lists of them), whatever the table.
_ADDR = {"start", "end", "lo", "hi", "at", "vma", "tree", "trees"}
# Columns of VMA lists: (start, end, perms) tuples or {start, end, perms, vm_flags, vma} dicts.
_VMA_LISTS = {"before", "after"}
_MASK = (1 << 64) - 1


def table(trace, name: str) -> pd.DataFrame:
    """The report table ``name`` (one of :data:`TABLES`) as a DataFrame with integers and lists."""
    if name not in TABLES:
        raise KeyError(f"unknown report table {name!r}; tables are {', '.join(TABLES)}")
    rd = report_data(trace)
    df = rd.safe(TABLES[name])
    if df is None:
        return pd.DataFrame(columns=_FALLBACK_COLUMNS.get(name, []))
    # before_vmas/after_vmas repeat before/after with kernel pointers and flags:
    # left to the Python API (trace.changes()), the exported lists stay readable.
    return df.drop(columns=[c for c in ("before_vmas", "after_vmas") if c in df.columns])


def _hex(v) -> str:
    return f"{int(v) & _MASK:#x}"


def _vma_text(v) -> str:
    if isinstance(v, dict):
        s = f"{_hex(v['start'])}-{_hex(v['end'])} {v.get('perms', '')}"
        return s + (f" vma={_hex(v['vma'])}" if v.get("vma") else "")
    s, e, *rest = v
    return f"{_hex(s)}-{_hex(e)}" + (f" {rest[0]}" if rest else "")


def _arg_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("arg") and c[3:].isdigit()]


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with addresses as 0x-hex strings and lists as readable strings (for CSV).

    Syscall arguments (``arg0``..``arg5``) and ``ret`` are hex where the
    row's ``syscall`` takes an address there, decimal otherwise.
    """
    out = df.copy()
    if len(out) == 0:
        return out
    for c in out.columns:
        col = out[c]
        if c in _VMA_LISTS and col.dtype == object:
            out[c] = ["; ".join(_vma_text(v) for v in x) if isinstance(x, (list, tuple)) else x for x in col]
        elif c in _ADDR:
            if col.dtype == object:
                out[c] = ["; ".join(_hex(v) for v in x) if isinstance(x, (list, tuple)) else _hex(x) for x in col]
            else:
                out[c] = [_hex(v) for v in col.tolist()]
        elif col.dtype == object and len(col) and isinstance(col.iloc[0], (list, tuple)):
            out[c] = ["; ".join(str(v) for v in x) if isinstance(x, (list, tuple)) else x for x in col]
    if "syscall" in out.columns:
        # Kernel paths (no syscall) have no arguments: empty cells, not a
        # decimal "0" among the hex addresses of the same column.
        sc = ["" if s != s or s is None or str(s) in ("", "nan", "<NA>") else str(s) for s in out["syscall"].tolist()]
        for c in _arg_columns(out):
            i = int(c[3:])
            out[c] = ["" if not s else _hex(v) if i in ADDRESS_ARGS.get(s, ()) else str(int(v))
                      for s, v in zip(sc, df[c].tolist())]
        if "ret" in out.columns:
            out["ret"] = ["" if not s else _hex(v) if s in RETURNS_ADDRESS and int(v) >= 0 else str(int(v))
                          for s, v in zip(sc, df["ret"].tolist())]
    return out


_VMA3 = pa.list_(pa.struct([("start", pa.uint64()), ("end", pa.uint64()), ("perms", pa.string())]))
_VMA5 = pa.list_(pa.struct([("start", pa.uint64()), ("end", pa.uint64()), ("perms", pa.string()),
                            ("vm_flags", pa.uint64()), ("vma", pa.uint64())]))


def arrow_table(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table: addresses uint64, lists as Arrow lists (VMAs as structs)."""
    arrays, names = [], []
    for c in df.columns:
        col = df[c]
        vals = col.tolist()
        if c in _VMA_LISTS and col.dtype == object:
            if any(isinstance(x, (list, tuple)) and x and isinstance(x[0], dict) for x in vals):
                arr = pa.array([[{k: d[k] for k in ("start", "end", "perms", "vm_flags", "vma")} for d in x]
                                for x in vals], type=_VMA5)
            else:
                arr = pa.array([[{"start": int(s), "end": int(e), "perms": str(p)} for s, e, p, *_ in x]
                                for x in vals], type=_VMA3)
        elif col.dtype == object and any(isinstance(x, (list, tuple)) for x in vals):
            ints = all(isinstance(v, (int, np.integer)) for x in vals for v in x)
            if ints:
                arr = pa.array([[int(v) & _MASK for v in x] for x in vals],
                               type=pa.list_(pa.uint64() if c in _ADDR else pa.int64()))
            else:
                arr = pa.array([[str(v) for v in x] for x in vals], type=pa.list_(pa.string()))
        elif c in _ADDR or (c.startswith("arg") and c[3:].isdigit()):
            arr = pa.array(np.asarray([int(v) & _MASK for v in vals], dtype=np.uint64), type=pa.uint64())
        elif isinstance(col.dtype, pd.CategoricalDtype):
            arr = pa.array(col.astype(str).tolist(), type=pa.string())
        else:
            arr = pa.Array.from_pandas(col)
        arrays.append(arr)
        names.append(c)
    return pa.Table.from_arrays(arrays, names=names)


def write_csv(df: pd.DataFrame, path) -> None:
    """``csv_frame(df).to_csv(path, index=False)``: by Arrow kernels
    (:mod:`mmtrace.report.csvfast`, the same bytes) when it knows every
    column, else as said."""
    from .csvfast import Unsupported
    from .csvfast import write_csv as fast

    try:
        fast(df, path)
    except Unsupported:
        csv_frame(df).to_csv(path, index=False)


def export(trace, out_dir: str | Path, fmt: str = "csv", tables=None, progress=None) -> dict[str, Path]:
    """Write the report tables into ``out_dir`` (created) as ``NAME.csv`` or ``NAME.parquet``.

    ``tables``: names from :data:`TABLES` (default: all).  Returns
    {name: path}.  A table that could not be computed is written empty (with
    no columns) and its error is in ``report_data(trace).errors``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(tables or TABLES)
    written = {}
    for i, name in enumerate(names):
        df = table(trace, name)
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            write_csv(df, path)
        else:
            pq.write_table(arrow_table(df), path)
        written[name] = path
        if progress is not None:
            progress.update((i + 1) / len(names))
    return written
