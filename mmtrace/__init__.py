"""mmtrace: watch the kernel manage process address spaces, and explain it.

    t = mmtrace.open("mmtrace.data")
    t.events("tree_write")      # maple tree writes, one row per event
    t.processes()               # one row per traced process
    t.lost                      # {source: events lost}

Recording (root, BCC) lives in mmtrace.capture; everything else works on a
saved trace.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["open", "stream", "Trace", "__version__"]


def __getattr__(name: str):
    # Imported on first use: the recorder (mmtrace.capture) never needs the
    # analysis side, nor the ~0.4 s and ~50 MB that pandas costs to import.
    if name in ("open", "stream", "Trace"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmtrace' has no attribute {name!r}")
