"""The changes table as an Arrow table of flat columns, ready for pyarrow's CSV writer.

``DataFrame.to_csv`` formats every cell in Python; here every column is made
with numpy/pyarrow kernels: addresses become ``0x`` hex text (16 nibbles from
a lookup table, leading zeros trimmed by ``utf8_ltrim``), each list of VMAs
one ``"; "``-joined text cell (``binary_join`` over an Arrow list array).
The only Python loop left is numpy reading the VMA tuples out of the lists.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..events.flags import MAPS_PERM_BITS
from .vmatree import perms_of

__all__ = ["hex_text", "changes_arrow", "write_changes_csv"]

_NIB = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_PERM_TEXT = np.array([perms_of(f) for f in range(MAPS_PERM_BITS + 1)], dtype=object)
_ADDR = ("tree", "lo", "hi", "arg0")


def hex_text(a) -> pa.Array:
    """``0x`` hex text of unsigned 64-bit integers (``0x0`` for 0), vectorised."""
    a = np.ascontiguousarray(np.asarray(a, dtype=np.uint64).astype(">u8"))
    b = a.view(np.uint8).reshape(-1, 8)
    nib = np.empty((len(a), 18), dtype=np.uint8)
    nib[:, 0], nib[:, 1] = ord("0"), ord("x")
    nib[:, 2::2] = _NIB[b >> 4]
    nib[:, 3::2] = _NIB[b & 15]
    raw = pa.array(nib.view("S18").ravel(), type=pa.binary(18)).cast(pa.binary()).cast(pa.string())
    digits = pc.utf8_ltrim(pc.utf8_slice_codeunits(raw, 2), characters="0")
    digits = pc.if_else(pc.equal(pc.utf8_length(digits), 0), "0", digits)
    return pc.binary_join_element_wise("0x", digits, "")


def _vma_text(col, with_ptr: bool) -> pa.Array:
    """One text cell per row: its VMAs (start, end, vma, vm_flags) as ``0xS-0xE perms[ vma=0x.. flags=0x..]``, "; "-joined."""
    lens = np.fromiter(map(len, col), dtype=np.int64, count=len(col))
    offs = np.zeros(len(col) + 1, dtype=np.int32)
    np.cumsum(lens, out=offs[1:])
    flat = list(chain.from_iterable(col))
    v = np.array(flat, dtype=np.uint64).reshape(-1, 4) if flat else np.zeros((0, 4), np.uint64)
    perms = pa.array(_PERM_TEXT[(v[:, 3] & np.uint64(MAPS_PERM_BITS)).astype(np.int64)], type=pa.string())
    parts = [hex_text(v[:, 0]), "-", hex_text(v[:, 1]), " ", perms]
    if with_ptr:
        parts += [" vma=", hex_text(v[:, 2]), " flags=", hex_text(v[:, 3])]
    text = pc.binary_join_element_wise(*parts, "")
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offs), text), "; ")


def changes_arrow(ch: pd.DataFrame) -> pa.Table:
    """``changes()`` as flat Arrow columns: numbers stay numbers (``tree``,
    ``lo``, ``hi``, ``arg0`` as hex text), ``before``/``after`` as
    ``0xS-0xE perms; ...`` and ``before_vmas``/``after_vmas`` with the VMA
    pointer and vm_flags too."""
    cols = {}
    for c in ch.columns:
        if c in ("before", "after"):
            cols[c] = _vma_text(ch[f"{c}_vmas"].tolist(), False)
        elif c in ("before_vmas", "after_vmas"):
            cols[c] = _vma_text(ch[c].tolist(), True)
        elif c in _ADDR:
            cols[c] = hex_text(ch[c].to_numpy())
        elif ch[c].dtype == object:
            cols[c] = pa.array(ch[c].astype(str).to_numpy(), type=pa.string())
        else:
            cols[c] = pa.array(ch[c].to_numpy())
    return pa.table(cols)


def write_changes_csv(ch: pd.DataFrame, path) -> None:
    """Write :func:`changes_arrow` of ``ch`` to ``path`` with pyarrow's CSV writer."""
    import pyarrow.csv as pcsv

    pcsv.write_csv(changes_arrow(ch), str(path))
