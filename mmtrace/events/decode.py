"""Raw records -> typed DataFrames, the columns a trace stores.

Vectorised: one pass of numpy per batch, no Python object per event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import KINDS

__all__ = ["to_frame", "make_records", "empty_frame", "PROC_WHAT", "decode_dev"]

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


def _labels(values: np.ndarray, names: dict[int, str], fallback: str) -> pd.Categorical:
    # Few distinct values among many rows: hash-factorize (no sort), name the uniques.
    codes, uniq = pd.factorize(values)
    labels = [names.get(int(u), fallback.format(int(u))) for u in uniq]
    if len(set(labels)) < len(labels):  # two addresses with one name: merge them
        cats = list(dict.fromkeys(labels))
        remap = np.array([cats.index(lbl) for lbl in labels], dtype=codes.dtype)
        codes, labels = remap[codes], cats
    return pd.Categorical.from_codes(codes, categories=labels)


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
      syscall name in ``syscall``;
    - ``proc``: ``comm`` and ``filename`` become str, ``what`` the names
      fork/exec/exit.
    """
    k = KINDS[kind]
    if records.dtype != k.dtype:
        raise TypeError(f"{kind}: records of dtype {records.dtype}, expected {k.dtype}")
    cols: dict[str, object] = {}
    for name in k.dtype.names:
        if name == "kind" or name.startswith("_"):
            continue
        cols[name] = records[name]
    if kind == "tree_write":
        cols["fn"] = _labels(records["fn"], fn_names or {}, "0x{:x}")
    elif kind == "syscall":
        args = cols.pop("args")
        for i in range(6):
            cols[f"arg{i}"] = np.ascontiguousarray(args[:, i])
        by_id = {v: n for n, v in (syscalls or {}).items()}
        cols["syscall"] = _labels(records["sc"], by_id, "sc{}")
        del cols["sc"]
    elif kind == "proc":
        cols["comm"] = _strings(records["comm"])
        cols["filename"] = _strings(records["filename"])
        cols["what"] = np.array([PROC_WHAT.get(int(w), str(w)) for w in records["what"]], dtype=object)
    return pd.DataFrame(cols)


def empty_frame(kind: str) -> pd.DataFrame:
    """No events of ``kind``, with the columns and dtypes :func:`to_frame` gives:
    a short or killed trace still has every column user code asks for."""
    return to_frame(kind, np.zeros(0, dtype=KINDS[kind].dtype))
