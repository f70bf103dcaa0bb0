"""Drain capacity of the recorder's user-space path, apart from any workload.

    python benchmarks/drain.py [--events N] [--trace T] [--code DIR]

The kernel side is measured by loss.py (events/s a real workload produced
with zero loss); this times what the recorder does per second of events
once they are out of the ring: decode (``mmtrace.events.decode.to_arrow``,
what the recorder calls) and write a Parquet part
(``mmtrace.trace.TraceWriter``), on the mmap loop's mix of record kinds (5
tree writes, 3 syscalls, 1 unmapped_area per loop).  The records' values
are synthetic (incompressible random addresses) unless ``--trace T`` names
a recording: raw records are then rebuilt from its tree_write, syscall and
unmapped_area columns, so compression sees real values.  Prints events/s
for the whole path, decode and write apart, and bytes per event on disk.
``--code DIR`` puts DIR first on sys.path (an export of older code), to
compare A/B.  At full speed the recorder must drain faster than the traced
program produces, or what waits for the writer grows.  No root needed.
"""

from __future__ import annotations

import argparse
import glob
import sys
import tempfile
import time

import numpy as np

MIX = {"tree_write": 5, "syscall": 3, "unmapped_area": 1}
FN = {0xFFFFFFFF81000000 + i * 64: f"fn{i}" for i in range(6)}
SC = {"mmap": 1, "munmap": 2, "mprotect": 3}


def synthetic(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    from mmtrace.events.decode import make_records

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


def from_trace(trace: str, kind: str, n: int) -> np.ndarray:
    """Raw records of ``kind`` rebuilt from the first ``n`` rows of a recording."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmtrace.events.schema import KINDS

    parts = sorted(glob.glob(f"{trace}/events/{kind}/part-*.parquet"))
    if not parts:
        raise SystemExit(f"drain.py: {trace} has no {kind} events")
    t = pq.read_table(parts[: max(1, len(parts))]).slice(0, n)
    dt = KINDS[kind].dtype
    arr = np.zeros(len(t), dtype=dt)
    arr["kind"] = KINDS[kind].id
    for name in dt.names:
        if name in t.column_names and pa.types.is_integer(t.schema.field(name).type):
            arr[name] = t.column(name).to_numpy()
    if kind == "tree_write":
        arr["fn"] = np.array(list(FN), dtype=np.uint64)[t.column("fn").combine_chunks().indices.to_numpy() % len(FN)]
    if kind == "syscall":
        for i in range(6):
            arr["args"][:, i] = t.column(f"arg{i}").to_numpy()
        arr["sc"] = t.column("syscall").combine_chunks().indices.to_numpy() % len(SC) + 1
    if len(arr) < n:  # a short recording: repeat it
        arr = np.resize(arr, n)
    return arr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="events per run (default %(default)s)")
    ap.add_argument("--flush", type=float, default=1.0, help="seconds of events per part, at 1 M events/s")
    ap.add_argument("--trace", help="take the records' values from this recording (default: synthetic)")
    ap.add_argument("--code", help="import mmtrace from this directory (older code, for A/B)")
    a = ap.parse_args(argv)
    if a.code:
        sys.path.insert(0, a.code)
    from mmtrace.events.decode import to_arrow
    from mmtrace.trace.writer import TraceWriter

    rng = np.random.default_rng(1)
    per_loop = sum(MIX.values())
    loops = a.events // per_loop
    part = max(1, int(1_000_000 * a.flush) // per_loop)  # loops per flush at 1 M events/s
    raw = {k: (from_trace(a.trace, k, part * m) if a.trace else synthetic(k, part * m, rng)) for k, m in MIX.items()}
    with tempfile.TemporaryDirectory() as d:
        w = TraceWriter(f"{d}/t")
        decode = {k: 0.0 for k in MIX}
        write = {k: 0.0 for k in MIX}
        t0 = time.perf_counter()
        done = 0
        while done < loops:
            for k, arr in raw.items():
                t1 = time.perf_counter()
                at = to_arrow(k, arr, fn_names=FN, syscalls=SC)
                t2 = time.perf_counter()
                w.append(f"events/{k}", at)
                write[k] += time.perf_counter() - t2
                decode[k] += t2 - t1
            done += part
        dt = time.perf_counter() - t0
        n = done * per_loop
        print(f"drain (decode + Parquet write), one thread, {'values of ' + a.trace if a.trace else 'synthetic values'}: "
              f"{n:,} events in {dt:.2f} s = {n / dt:,.0f} events/s "
              f"(decode {sum(decode.values()):.2f} s, write {sum(write.values()):.2f} s)")
        for k in MIX:
            ev = done * MIX[k]
            print(f"  {k:14s} {ev / (decode[k] + write[k]):>12,.0f} events/s  decode {ev / decode[k]:>12,.0f}/s  write {ev / write[k]:>12,.0f}/s")
        print(f"  on disk: {w.bytes_written / n:.1f} bytes/event")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
