"""Drain capacity of the recorder's user-space path, apart from any workload.

    python benchmarks/drain.py [--events N]

The kernel side is measured by loss.py (events/s a real workload produced
with zero loss); this times what the recorder does per second of events
once they are out of the ring: decode (mmtrace.events.decode.to_frame) and
write a Parquet part (mmtrace.trace.TraceWriter), on a realistic mix of
record kinds (5 tree writes, 3 syscalls, 1 unmapped_area per mmap loop).
Prints events/s for the whole path and per kind.  No root needed.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from mmtrace.events.decode import make_records, to_frame
from mmtrace.trace.writer import TraceWriter

MIX = {"tree_write": 5, "syscall": 3, "unmapped_area": 1}
FN = {0xFFFFFFFF81000000 + i: f"fn{i}" for i in range(6)}
SC = {"mmap": 1, "munmap": 2, "mprotect": 3}


def batch(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    arr = make_records(kind, [{}]).repeat(n)
    arr["ts"] = np.arange(n, dtype=np.uint64) * 1000
    arr["tgid"] = arr["tid"] = 4242
    if kind == "tree_write":
        arr["fn"] = rng.choice(list(FN), n)
        for f in ("tree", "index", "last", "val", "vm_start", "vm_end", "node"):
            arr[f] = rng.integers(0, 2**47, n, dtype=np.uint64)
        arr["vm_flags"] = 0x100073
        arr["flags"] = 7
    elif kind == "syscall":
        arr["sc"] = rng.integers(1, 4, n)
        arr["args"] = rng.integers(0, 2**47, (n, 6), dtype=np.uint64)
        arr["ret"] = 0
    else:
        arr["addr"] = rng.integers(0, 2**47, n, dtype=np.uint64)
    return arr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="events per run (default %(default)s)")
    ap.add_argument("--flush", type=float, default=1.0, help="seconds of events per part, at 1 M events/s")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    per_loop = sum(MIX.values())
    loops = a.events // per_loop
    part = max(1, int(1_000_000 * a.flush) // per_loop)  # loops per flush at 1 M events/s
    raw = {k: batch(k, part * m, rng) for k, m in MIX.items()}
    with tempfile.TemporaryDirectory() as d:
        w = TraceWriter(f"{d}/t")
        per_kind = {k: 0.0 for k in MIX}
        t0 = time.perf_counter()
        done = 0
        while done < loops:
            for k, arr in raw.items():
                t1 = time.perf_counter()
                w.append(f"events/{k}", to_frame(k, arr, fn_names=FN, syscalls=SC))
                per_kind[k] += time.perf_counter() - t1
            done += part
        dt = time.perf_counter() - t0
        n = done * per_loop
        print(f"drain (decode + Parquet write), one thread: {n:,} events in {dt:.2f} s = {n / dt:,.0f} events/s")
        for k, s in per_kind.items():
            print(f"  {k:14s} {done * MIX[k] / s:>14,.0f} events/s")
        print(f"  on disk: {w.bytes_written / n:.1f} bytes/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
