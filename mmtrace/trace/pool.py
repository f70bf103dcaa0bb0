"""Arrow's allocator for mmtrace's own processes: the system's (malloc), chosen once.

Arrow C++ picks its default allocator when pyarrow is first imported, from
ARROW_DEFAULT_MEMORY_POOL; its default, mimalloc, keeps freed memory for reuse
inside Arrow, where numpy and pandas (glibc malloc) cannot reuse it, and gives
little back.  With malloc both share one heap and ``malloc_trim`` hands free
pages back (:func:`trim_malloc`).  Measured: the recorder ~25 MB less
peak RSS at full speed; ``mmtrace report`` of the 2.5 M-event mmloop trace
~1.46 -> 1.11 GB peak RSS with the allocator alone changed, same time.  ``pa.set_memory_pool()`` later would only change
the pool pyarrow's Python functions pass, not what the Parquet reader and
writer allocate from.  Library users keep whatever their process chose.
"""

from __future__ import annotations

import os

__all__ = ["use_system_allocator", "trim_malloc"]

_KEY = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_allocator() -> None:
    """Make malloc Arrow's default pool, if pyarrow is not imported yet (else a no-op:
    the choice is made).  The variable is put back, so a traced command or any
    child never sees it; a value the user set is kept."""
    import sys

    if "pyarrow" in sys.modules:
        return
    prev = os.environ.get(_KEY)
    os.environ[_KEY] = prev or "system"
    try:
        import pyarrow as pa

        pa.default_memory_pool()
    finally:
        if prev is None:
            del os.environ[_KEY]


_libc = None


def trim_malloc() -> None:
    """Hand glibc malloc's free pages back to the system (best effort; nothing
    to do elsewhere).  Freed memory between live blocks otherwise stays in
    the process: the recorder's flushes (batches of a few MB taken, decoded,
    written and freed, while the drain thread allocates the next) left its
    RSS ~10 MB higher after each one, 85 -> 168 MB over 8 flushes on the mmap
    loop at full speed; trimmed before each flush it stayed at 108-125 MB.
    One call took ~1.2 ms there."""
    global _libc
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _libc = False
    if _libc:
        _libc(0)
