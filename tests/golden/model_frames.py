"""The model's frames as CSV text: what the golden diff tests compare.

``expected/<trace>.<frame>.csv`` beside ``data/<trace>`` holds the frames the
code produced when they were written (``make_model_golden.py``); the test
(``test_golden_model.py``) recomputes them and requires identical text.
List columns (``before``, ``after``, ``at`` ...) are written with ``repr``
of plain ints/strings, so the text is exact.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "data"
EXPECTED = Path(__file__).parent / "expected"
TRACES = ("demo.trace", "synthetic-failed-split-vma.trace")
FRAMES = ("changes", "splits", "merges", "processes")


def _plain(v):
    """Python ints/strs in place of numpy scalars, recursively (stable repr)."""
    if isinstance(v, (list, tuple)):
        return type(v)(_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if hasattr(v, "item"):
        return v.item()
    return v


def frame(t, name: str) -> pd.DataFrame:
    """Frame ``name`` of trace ``t`` (a fresh ``mmtrace.open``), every cell CSV-stable."""
    if name == "processes":
        df = t.processes()
        df = df.assign(exec=df["exec"].map(lambda e: ";".join(e)), trees=df["trees"].map(lambda x: repr(_plain(list(x)))))
    else:
        df = getattr(t, name)()
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = [repr(_plain(v)) if isinstance(v, (list, tuple, dict)) else v for v in df[c]]
    return df.reset_index(drop=True)


def csv_text(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()
