"""The changes table as an Arrow table of flat columns, ready for pyarrow's CSV writer.

``DataFrame.to_csv`` formats every cell in Python; here every column is made
with numpy/pyarrow kernels: addresses become ``0x`` hex text (16 nibbles from
a lookup table, leading zeros masked out), each list of VMAs
one ``"; "``-joined text cell (``binary_join`` over an Arrow list array).
The only Python loop left is numpy reading the VMA tuples out of the lists.
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .vmatree import perms_column

__all__ = ["hex_text", "flat_vmas", "vma_text", "vma_texts", "changes_arrow", "write_changes_csv"]

_NIB = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ADDR = ("tree", "lo", "hi", "arg0")


def _hex4() -> np.ndarray:
    """The 4 ASCII hex digits of every 16-bit value, as one little-endian uint32 each."""
    global _H4
    if _H4 is None:
        v = np.arange(1 << 16, dtype=np.uint32)
        ch = _NIB[np.stack([(v >> s) & 15 for s in (12, 8, 4, 0)], axis=1)].astype(np.uint32)
        _H4 = ch[:, 0] | (ch[:, 1] << 8) | (ch[:, 2] << 16) | (ch[:, 3] << 24)
    return _H4


_H4: np.ndarray | None = None


def hex_text(a) -> pa.Array:
    """``0x`` hex text of unsigned 64-bit integers (``0x0`` for 0), vectorised: 16
    digits per value from a table of every 16-bit value's four, the leading
    zeros trimmed by Arrow (``ascii_ltrim``), ``0x`` prepended."""
    a = np.asarray(a, dtype=np.uint64)
    n = len(a)
    quads = np.ascontiguousarray(a.astype(">u8")).view(">u2").reshape(n, 4)
    digits = pa.StringArray.from_buffers(n, pa.py_buffer(np.arange(0, 16 * n + 1, 16, dtype=np.int32)),
                                         pa.py_buffer(np.ascontiguousarray(_hex4()[quads])))
    out = pc.binary_join_element_wise("0x", pc.ascii_ltrim(digits, "0"), "")
    zero = a == 0
    if zero.any():
        out = pc.if_else(pa.array(zero), "0x0", out)
    return out


def flat_vmas(col) -> tuple[np.ndarray, np.ndarray]:
    """A column of VMA lists (``before_vmas``/``after_vmas``: (start, end, vma,
    vm_flags) tuples) as (offsets: row k's VMAs are rows ``offs[k]:offs[k+1]``,
    a uint64 array of shape (VMAs, 4)); numpy reads the ints straight out of
    the nested tuples (``fromiter`` over one chain)."""
    lens = np.fromiter(map(len, col), dtype=np.int64, count=len(col))
    offs = np.zeros(len(col) + 1, dtype=np.int64)
    np.cumsum(lens, out=offs[1:])
    m = int(offs[-1])
    v = np.fromiter(chain.from_iterable(chain.from_iterable(col)), dtype=np.uint64, count=4 * m).reshape(m, 4)
    return offs, v


def vma_texts(col, forms=("plain",)) -> dict[str, pa.Array]:
    """Text cells of a column of VMA lists ((start, end, vma, vm_flags) tuples), one
    per row, its VMAs "; "-joined, in each of ``forms`` (the column read once):
    ``plain`` ``0xS-0xE perms``; ``full`` ``0xS-0xE perms vma=0x.. flags=0x..``;
    ``vma`` ``0xS-0xE perms[ vma=0x..]``, the pointer where not 0 (as the
    report writes the VMA dicts of splits and merges)."""
    offs, v = flat_vmas(col)
    offs = pa.array(offs.astype(np.int32))
    perms = pa.array(perms_column(v[:, 3]), type=pa.string())
    base = pc.binary_join_element_wise(hex_text(v[:, 0]), "-", hex_text(v[:, 1]), " ", perms, "")
    out = {}
    for f in forms:
        if f == "plain":
            text = base
        elif f == "full":
            text = pc.binary_join_element_wise(base, " vma=", hex_text(v[:, 2]), " flags=", hex_text(v[:, 3]), "")
        elif f == "vma":
            text = pc.if_else(pa.array(v[:, 2] != 0), pc.binary_join_element_wise(base, " vma=", hex_text(v[:, 2]), ""),
                              base)
        else:
            raise ValueError(f"unknown form {f!r}: plain, full or vma")
        out[f] = pc.binary_join(pa.ListArray.from_arrays(offs, text), "; ")
    return out


def vma_text(col, with_ptr: bool | str = False) -> pa.Array:
    """:func:`vma_texts` of one form: ``plain`` (``with_ptr`` False), ``full`` (True) or ``vma``."""
    form = "full" if with_ptr is True else "vma" if with_ptr == "vma" else "plain"
    return vma_texts(col, (form,))[form]


def changes_arrow(ch: pd.DataFrame) -> pa.Table:
    """``changes()`` as flat Arrow columns: numbers stay numbers (``tree``,
    ``lo``, ``hi``, ``arg0`` as hex text), ``before``/``after`` as
    ``0xS-0xE perms; ...`` and ``before_vmas``/``after_vmas`` with the VMA
    pointer and vm_flags too (each side's VMAs read once for both)."""
    cols = {}
    texts = {}
    for c in ch.columns:
        side = c.removesuffix("_vmas")
        if side in ("before", "after") and f"{side}_vmas" in ch.columns:
            if side not in texts:
                texts[side] = vma_texts(ch[f"{side}_vmas"].tolist(), ("plain", "full"))
            cols[c] = texts[side]["plain" if c == side else "full"]
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
