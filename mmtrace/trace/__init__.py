"""The trace on disk: a versioned, self-describing directory (see writer.py)."""

from .reader import IncompleteTraceWarning, TraceError, TraceFile
from .writer import FORMAT, FORMAT_VERSION, DiskFull, TraceWriter

__all__ = [
    "TraceFile",
    "TraceError",
    "IncompleteTraceWarning",
    "TraceWriter",
    "DiskFull",
    "FORMAT",
    "FORMAT_VERSION",
]
