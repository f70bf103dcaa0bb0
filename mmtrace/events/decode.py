"""Raw records -> typed DataFrames, the columns a trace stores.

Vectorised: one pass of numpy per batch, no Python object per event.
The columns are built once (:func:`_columns`) and handed out either as a
pandas DataFrame (:func:`to_frame`, for ``mmtrace.stream``) or as an Arrow
table (:func:`to_arrow`, what the recorder writes: it never imports pandas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .schema import KINDS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["to_frame", "to_arrow", "columns_to_arrow", "rows_to_arrow", "make_records", "empty_frame", "PROC_WHAT", "decode_dev"]

PROC_WHAT = {1: "fork", 2: "exec", 3: "exit"}


def make_records(kind: str, rows: list[dict]) -> np.ndarray:
    """Raw records of ``kind`` built from dicts (missing fields are 0): what the
    ring buffer would have delivered.  For tests and synthetic traces."""
    k = KINDS[kind]
    arr = np.zeros(len(rows), dtype=k.dtype)
    arr["kind"] = k.id
    for i, r in enumerate(rows):
        for name, v in r.items():
            arr[name][i] = v
    return arr


def decode_dev(dev: np.ndarray) -> np.ndarray:
    """Kernel-internal dev_t (MAJOR << 20 | MINOR) -> "MM:mm" hex as /proc/PID/maps shows it."""
    dev = np.asarray(dev, dtype=np.uint64)
    major = dev >> np.uint64(20)
    minor = dev & np.uint64((1 << 20) - 1)
    return np.array([f"{int(a):02x}:{int(b):02x}" for a, b in zip(major, minor)], dtype=object)


def _strings(col: np.ndarray) -> np.ndarray:
    # Fixed char arrays from the kernel: NUL-terminated, maybe garbage after.
    return np.array([b.split(b"\0", 1)[0].decode(errors="replace") for b in col], dtype=object)


class _Labels:
    """A categorical column: ``codes`` into ``labels`` (labels in order of first appearance)."""

    def __init__(self, codes: np.ndarray, labels: list[str]) -> None:
        self.codes = codes
        self.labels = labels


def _labels(values: np.ndarray, names: dict[int, str], fallback: str) -> _Labels:
    # Few distinct values among many rows: name the uniques, in order of first
    # appearance (as pandas.factorize numbers them).
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    codes, uniq = rank[inverse.reshape(-1)], uniq[order]
    labels = [names.get(int(u), fallback.format(int(u))) for u in uniq]
    if len(set(labels)) < len(labels):  # two addresses with one name: merge them
        cats = list(dict.fromkeys(labels))
        remap = np.array([cats.index(lbl) for lbl in labels], dtype=codes.dtype)
        codes, labels = remap[codes], cats
    # The narrowest code type, as pandas picks for a Categorical.
    width = np.int8 if len(labels) < 1 << 7 else np.int16 if len(labels) < 1 << 15 else np.int32
    return _Labels(codes.astype(width), labels)


# Bytes of records copied out field by field while they stay in cache: one
# strided pass over the whole batch per field is 3-4x slower (a batch is
# tens of MB, each field a few bytes of each 100-150-byte record).
_CHUNK_BYTES = 1 << 20


def _fields(records: np.ndarray, names: list[str]) -> dict[str, object]:
    """Each field of ``records`` in ``names`` as a contiguous array (a field
    of shape (n,), such as ``args``, as a list of n contiguous arrays)."""
    out: dict[str, object] = {}
    copies = []  # (destination, field, index into the field's shape or None)
    for name in names:
        ft = records.dtype[name]
        if ft.shape:
            (width,) = ft.shape
            out[name] = [np.empty(len(records), ft.base) for _ in range(width)]
            copies += [(o, name, i) for i, o in enumerate(out[name])]
        else:
            out[name] = np.empty(len(records), ft)
            copies.append((out[name], name, None))
    step = max(1, _CHUNK_BYTES // max(1, records.dtype.itemsize))
    for lo in range(0, len(records), step):
        chunk = records[lo : lo + step]
        for dest, name, i in copies:
            dest[lo : lo + len(chunk)] = chunk[name] if i is None else chunk[name][:, i]
    return out


def _columns(kind: str, records: np.ndarray, fn_names: dict[int, str] | None,
             syscalls: dict[str, int] | None) -> dict[str, object]:
    k = KINDS[kind]
    if records.dtype != k.dtype:
        raise TypeError(f"{kind}: records of dtype {records.dtype}, expected {k.dtype}")
    cols: dict[str, object] = _fields(records, [n for n in k.dtype.names if n != "kind" and not n.startswith("_")])
    if kind == "tree_write":
        cols["fn"] = _labels(records["fn"], fn_names or {}, "0x{:x}")
    elif kind in ("syscall", "mmap_lock"):
        if kind == "mmap_lock":
            args = None
        else:
            args = cols.pop("args")
        for i in range(6 if args is not None else 0):
            cols[f"arg{i}"] = args[i]
        by_id = {v: n for n, v in (syscalls or {}).items()}
        cols["syscall"] = _labels(records["sc"], by_id, "sc{}")
        del cols["sc"]
    elif kind == "proc":
        cols["comm"] = _strings(records["comm"])
        cols["filename"] = _strings(records["filename"])
        cols["what"] = np.array([PROC_WHAT.get(int(w), str(w)) for w in records["what"]], dtype=object)
    return cols


def to_frame(
    kind: str,
    records: np.ndarray,
    *,
    fn_names: dict[int, str] | None = None,
    syscalls: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Decode one batch of ``kind`` records into the columns stored in a trace.

    Padding and the ``kind`` byte are dropped; every other struct member of
    ``collectors/events.h`` becomes a column of the same name and width, with
    these changes:

    - ``tree_write.fn``: the kernel function name (str) instead of its address;
    - ``syscall``: ``args`` becomes ``arg0``..``arg5``; ``sc`` becomes the
      syscall name in ``syscall`` (``mmap_lock`` too);
    - ``proc``: ``comm`` and ``filename`` become str, ``what`` the names
      fork/exec/exit.
    """
    import pandas as pd

    cols = _columns(kind, records, fn_names, syscalls)
    for name, c in cols.items():
        if isinstance(c, _Labels):
            cols[name] = pd.Categorical.from_codes(c.codes, categories=c.labels)
    return pd.DataFrame(cols)


def to_arrow(
    kind: str,
    records: np.ndarray,
    *,
    fn_names: dict[int, str] | None = None,
    syscalls: dict[str, int] | None = None,
) -> pa.Table:
    """The columns of :func:`to_frame` as an Arrow table, without pandas: what
    ``pyarrow.Table.from_pandas(to_frame(...))`` holds, but its pandas
    metadata (the reader needs none: no index, and dictionary columns come
    back as categoricals)."""
    return columns_to_arrow(_columns(kind, records, fn_names, syscalls))


def columns_to_arrow(cols: dict[str, object]) -> pa.Table:
    """numpy columns -> an Arrow table with the types ``pyarrow.Table.from_pandas``
    gives the same DataFrame columns (str -> large_string, categoricals ->
    dictionary)."""
    import pyarrow as pa

    arrays = []
    for c in cols.values():
        if isinstance(c, _Labels):
            arrays.append(pa.DictionaryArray.from_arrays(_arrow_array(c.codes), _arrow_strings(c.labels)))
        elif c.dtype == object:
            arrays.append(_arrow_strings(c))
        else:
            arrays.append(_arrow_array(c))
    return pa.Table.from_arrays(arrays, names=list(cols))


# Arrow arrays straight from buffers: pyarrow.array() imports pandas (to ask
# whether its argument is a pandas object), ~0.4 s and ~50 MB the recorder
# does without.
def _arrow_array(c: np.ndarray):
    import pyarrow as pa

    c = np.ascontiguousarray(c)
    return pa.Array.from_buffers(pa.from_numpy_dtype(c.dtype), len(c), [None, pa.py_buffer(c)])


def _arrow_strings(values):
    import pyarrow as pa

    enc = [v.encode("utf-8", "surrogateescape") for v in values]
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in enc], out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), len(enc), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(enc))])


def rows_to_arrow(rows: list[dict], columns: list[str] | None = None) -> pa.Table:
    """Rows of ints and strs -> the Arrow table ``from_pandas(pd.DataFrame(rows))`` gives."""
    cols = {}
    for k in columns or list(rows[0]):
        v = [r[k] for r in rows]
        cols[k] = np.array(v, dtype=object if any(isinstance(x, str) for x in v) else np.int64)
    return columns_to_arrow(cols)


def empty_frame(kind: str) -> pd.DataFrame:
    """No events of ``kind``, with the columns and dtypes :func:`to_frame` gives:
    a short or killed trace still has every column user code asks for."""
    return to_frame(kind, np.zeros(0, dtype=KINDS[kind].dtype))
