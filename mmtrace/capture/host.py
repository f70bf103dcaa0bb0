"""Host-side evidence kept beside the events: the kernel log and the hugetlb pool.

- /dev/kmsg: hugetlb's own alarm is a warning printed by
  hugetlb_fix_reserve_counts() in mm/hugetlb.c ("Huge Page Reserved count may
  go negative"); every kernel message during a recording is kept.
- /sys/kernel/mm/hugepages/*/: the pool counters, sampled periodically to
  complement the in-kernel samples taken at traced syscalls and faults.
"""

from __future__ import annotations

import errno
import glob
import os
import time

__all__ = ["KmsgReader", "sample_hugepages"]

_HUGE_FIELDS = ("nr_hugepages", "free_hugepages", "resv_hugepages", "surplus_hugepages")


class KmsgReader:
    """New /dev/kmsg records since it was opened (without blocking).

    ``read()`` returns rows (dicts, the columns of the ``procfs/kmsg``
    table): ``ts`` (CLOCK_MONOTONIC ns when read),
    ``kmsg_us`` (the record's own timestamp, µs since boot on the kernel's
    local clock), ``seq``, ``level`` (0 emerg .. 7 debug), ``facility``, ``msg``.
    """

    def __init__(self) -> None:
        try:
            self.fd: int | None = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)  # only what is logged from now on
        except OSError:
            self.fd = None

    def read(self) -> list[dict]:
        rows = []
        while self.fd is not None:
            try:
                rec = os.read(self.fd, 8192)
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten before we read it: go on
                    continue
                break  # EAGAIN: nothing more
            if not rec:
                break
            head, _, msg = rec.decode(errors="replace").partition(";")
            parts = head.split(",")
            try:
                prio, seq, us = int(parts[0]), int(parts[1]), int(parts[2])
            except (ValueError, IndexError):
                continue
            rows.append(
                {
                    "ts": time.monotonic_ns(),
                    "kmsg_us": us,
                    "seq": seq,
                    "level": prio & 7,
                    "facility": prio >> 3,
                    "msg": msg.split("\n", 1)[0],
                }
            )
        return rows

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def raise_hugepages(n: int) -> int:
    """At least ``n`` huge pages in the pool: vm.nr_hugepages raised if lower,
    never lowered (other users of the machine share the pool).  Returns the
    value the kernel kept (it may give fewer when memory is short); OSError or
    ValueError when the sysctl cannot be read or written (not root)."""
    path = "/proc/sys/vm/nr_hugepages"
    with open(path) as f:
        cur = int(f.read().strip())
    if cur < n:
        with open(path, "w") as f:
            f.write(f"{n}\n")
        with open(path) as f:
            cur = int(f.read().strip())
    return cur


def sample_hugepages() -> list[dict]:
    """One row per huge page size: ``ts``, ``size_kb`` and the pool counters
    ``nr_hugepages``, ``free_hugepages``, ``resv_hugepages``, ``surplus_hugepages``."""
    rows = []
    ts = time.monotonic_ns()
    for d in sorted(glob.glob("/sys/kernel/mm/hugepages/hugepages-*kB")):
        row = {"ts": ts, "size_kb": int(d.rsplit("-", 1)[1][:-2])}
        try:
            for f in _HUGE_FIELDS:
                with open(os.path.join(d, f)) as fh:
                    row[f] = int(fh.read())
        except (OSError, ValueError):
            continue
        rows.append(row)
    return rows
