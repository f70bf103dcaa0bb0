"""The trace on disk: a versioned, self-describing directory (see writer.py)."""

from .damage import Damage, DamagedTraceWarning
from .reader import IncompleteTraceWarning, TraceError, TraceFile
from .writer import FORMAT, FORMAT_VERSION, DiskFull, TraceWriter

__all__ = [
    "TraceFile",
    "TraceError",
    "IncompleteTraceWarning",
    "DamagedTraceWarning",
    "Damage",
    "TraceWriter",
    "DiskFull",
    "FORMAT",
    "FORMAT_VERSION",
]
