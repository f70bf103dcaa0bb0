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

from .api import Trace, open, stream  # noqa: E402,A004

__all__ = ["open", "stream", "Trace", "__version__"]
