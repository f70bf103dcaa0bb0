"""Replay throughput of mmtrace.model on a trace of >= 1 M tree_write events.

    python benchmarks/replay.py [TRACE]        # without TRACE: records churn (root)

Prints events/s of the preprocessing + sequential replay (one core) and the
peak RSS.  Reading the Parquet tables is timed apart.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path


def record(path: Path, ops: int = 700_000) -> None:
    from mmtrace.workloads import build

    churn = build("churn")
    subprocess.run(
        [sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(path), "--",
         str(churn), "--seed", "7", "--ops", str(ops), "--forks", "0", "--hugetlb", "off"],
        check=True,
    )


def main(argv: list[str]) -> int:
    import mmtrace
    from mmtrace.model.model import Model

    path = Path(argv[0]) if argv else Path("/tmp/mmtrace-bench.trace")
    if not (path / "metadata.json").exists():
        record(path)
    t = mmtrace.open(path)
    t0 = time.perf_counter()
    for k in t.kinds:
        t.raw_events(k)
    t.snapshots()
    t1 = time.perf_counter()
    m = Model(t)
    t2 = time.perf_counter()
    e = m.engine()
    e.run(len(m.stream.records))
    t3 = time.perf_counter()
    ntw = m.stream.n_tree_write
    nall = sum(len(t.raw_events(k)) for k in t.kinds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"trace: {path}  tree_write {ntw:,}  all events {nall:,}  replay records {len(m.stream.records):,}")
    print(f"read parquet     {t1 - t0:6.2f} s")
    print(f"preprocess       {t2 - t1:6.2f} s")
    print(f"sequential loop  {t3 - t2:6.2f} s   {ntw / (t3 - t2):,.0f} tree_write/s  {len(m.stream.records) / (t3 - t2):,.0f} records/s")
    print(f"prep + loop      {t3 - t1:6.2f} s   {ntw / (t3 - t1):,.0f} tree_write/s  {nall / (t3 - t1):,.0f} events/s")
    print(f"peak RSS         {rss:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
