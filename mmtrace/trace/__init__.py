"""The trace on disk: a versioned, self-describing directory (see writer.py)."""

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

_FROM = {"TraceFile": "reader", "TraceError": "reader", "IncompleteTraceWarning": "reader",
         "Damage": "damage", "DamagedTraceWarning": "damage",
         "TraceWriter": "writer", "DiskFull": "writer", "FORMAT": "writer", "FORMAT_VERSION": "writer"}


def __getattr__(name: str):
    # Imported on first use: the recorder needs the writer only, and the
    # reader pulls in pandas.
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
