"""Read a BPF ring buffer of fixed-size records as numpy arrays, without callbacks.

The kernel's BPF ring buffer (kernel/bpf/ringbuf.c) maps as: one read-write
page holding ``consumer_pos``; then, read-only, one page holding
``producer_pos`` followed by the data area mapped twice in a row, so a record
that wraps around the end is still contiguous.  Each record is an 8-byte
header (``u32 len`` whose bit 31 means "reserved, not yet submitted" and bit
30 "discarded", ``u32 pg_off``) then the payload, padded to 8 bytes.

When every record of a ring has the same size (mmtrace keeps one ring per
event kind), everything between the two positions is one strided array:
draining is a bounds check and a copy, whatever the event rate.

The data area is mapped only while a batch is copied out, just the pages
it spans: the kernel maps every page of a ring mapping up front
(remap_vmalloc_range()), and a permanent mapping of mmtrace's rings (~67 MB
by default, twice that for the double mapping) would count in the
recorder's RSS all along.  The kernel's own double mapping makes any window
contiguous, wrapped or not.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["RingReader"]

_BUSY = np.uint32(1 << 31)
_DISCARD = np.uint32(1 << 30)


class RingReader:
    """Consume fixed-size records of ``dtype`` from the ring buffer map ``map_fd``."""

    def __init__(self, map_fd: int, data_size: int, dtype: np.dtype) -> None:
        page = mmap.PAGESIZE
        if data_size % page or data_size & (data_size - 1):
            raise ValueError("ring buffer size must be a power-of-two number of pages")
        if dtype.itemsize % 8:
            raise ValueError(f"record payload of {dtype.itemsize} bytes is not 8-byte aligned")
        self.size = data_size
        self.page = page
        self.rec = np.dtype([("_rb_len", "<u4"), ("_rb_pgoff", "<u4"), ("payload", dtype)])
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._fd = map_fd
        self._cpos = np.frombuffer(self._cons, dtype=np.uint64, count=1)
        self._ppos = np.frombuffer(self._prod, dtype=np.uint64, count=1)

    def backlog(self) -> int:
        """Bytes the kernel has reserved or submitted and :meth:`read` not yet taken."""
        return int(self._ppos[0]) - int(self._cpos[0])

    def read(self, limit: int | None = None) -> np.ndarray:
        """Copy out every submitted record (at most ``limit``) and release
        its space to the kernel."""
        c = int(self._cpos[0])
        p = int(self._ppos[0])
        rec = self.rec.itemsize
        n = (p - c) // rec
        if limit is not None:
            n = min(n, limit)
        if n <= 0:
            return np.empty(0, dtype=self.rec["payload"])
        # The data area starts 2 pages in (ringbuf_map_mmap_user(), kernel/bpf/ringbuf.c).
        at = c % self.size
        first = at - at % self.page
        length = -(-(at - first + n * rec) // self.page) * self.page
        window = mmap.mmap(self._fd, length, mmap.MAP_SHARED, mmap.PROT_READ, offset=2 * self.page + first)
        try:
            raw = np.frombuffer(window, dtype=self.rec, count=n, offset=at - first)
            lens = raw["_rb_len"].copy()
            busy = (lens & _BUSY) != 0
            if busy.any():
                # Reserved but not yet submitted: stop there, take it next time.
                n = int(np.argmax(busy))
                lens = lens[:n]
            bad = (lens & np.uint32(0x3FFFFFFF)) != self.rec["payload"].itemsize
            if bad.any():
                raise ValueError(
                    f"ring record of {int(lens[bad][0] & 0x3FFFFFFF)} bytes, expected "
                    f"{self.rec['payload'].itemsize}: collectors/events.h and the schema disagree"
                )
            out = raw["payload"][:n].copy()
            del raw
        finally:
            window.close()
        if n and ((lens & _DISCARD) != 0).any():
            out = out[(lens & _DISCARD) == 0]
        # The copy is complete before the kernel may reuse the space.
        self._cpos[0] = c + n * rec
        return out

    def close(self) -> None:
        del self._cpos, self._ppos
        self._cons.close()
        self._prod.close()
