"""Replay throughput and peak memory of mmtrace.model on a trace of >= 1 M tree_write events.

    python benchmarks/replay.py [TRACE] [--queries N]   # without TRACE: records churn (root)

Each measurement runs in a fresh subprocess pinned to one core, so its peak
RSS (VmHWM) is its own:

- ``read``: reading the needed columns of every Parquet part (nothing else);
- ``prep``: read + vectorised preprocessing into windows (no replay);
- ``build``: end to end, from opening the trace to the final trees
  (:meth:`Model.build`, checkpoints included), with the time in the
  sequential loop measured apart;
- ``vmas``: ``Model.vmas(pid, at)`` at N random instants after the build
  (checkpointed: each query replays at most one window).
"""

from __future__ import annotations

import json
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


def vmhwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def counts(path: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    out = {}
    for d in sorted((path / "events").iterdir()):
        out[d.name] = sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(d.glob("part-*.parquet")))
    return out


def measure(which: str, path: Path, nq: int) -> dict:
    import os

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core (pyarrow's threads too)
    import numpy as np
    import pyarrow.parquet  # noqa: F401  (import time is not replay time)

    import mmtrace
    from mmtrace.model.model import Model
    from mmtrace.model.stream import Source, no_gc

    out: dict = {"measure": which}
    t0 = time.perf_counter()
    t = mmtrace.open(path)
    if which == "read":
        src = Source(t)
        for r in (src.tw, src.scr):
            for k in range(len(r.parts)):
                r._load(k)
    elif which == "prep":
        src = Source(t)
        with no_gc():
            for w in src.windows(32768):
                w.lists()
                w.sc_lists()
    elif which == "build":
        m = Model(t)
        # Model.build, with the loop timed apart
        e = m.engine()
        loop = 0.0
        cps, bounds = [], []
        with no_gc():
            for w in m.source.windows(m.every):
                l0 = time.perf_counter()
                e.load(w)
                lists = w.lists()
                l1 = time.perf_counter()
                e.run_lists(lists, 0)
                l2 = time.perf_counter()
                loop += l2 - l1
                if w.hi != np.inf:
                    cps.append(e.snapshot())
                    bounds.append(int(w.hi))
                out["materialise"] = out.get("materialise", 0.0) + (l1 - l0)
        m._cps, m._bounds = cps, bounds
        out["loop"] = loop
        out["checkpoints"] = len(cps)
        out["live_vmas"] = sum(len(x) for x in e.trees.values())
        out["n_tree_write_kept"] = m.source.n_tree_write
    elif which == "vmas":
        m = Model(t)
        m.build()
        t1 = time.perf_counter()
        out["build"] = t1 - t0
        # (not t.processes(): it loads whole tables) the first traced process
        pid = int(m.source.proc["tgid"][0]) if m.source.proc["tgid"] else next(iter(m.initial))
        lo = min(p[1] for p in m.source.tw.parts)
        hi = max(p[2] for p in m.source.tw.parts)
        ats = np.random.default_rng(1).integers(lo, hi, nq).tolist()
        t1 = time.perf_counter()
        rows = 0
        for at in ats:
            rows += len(m.vmas(pid, at))
        out["queries"] = nq
        out["query_time"] = time.perf_counter() - t1
        out["rows"] = rows
        t0 = t1
    out["seconds"] = time.perf_counter() - t0
    out["vmhwm_mib"] = vmhwm_mib()
    return out


def run_measure(which: str, path: Path, nq: int) -> dict:
    r = subprocess.run([sys.executable, __file__, "--_measure", which, str(path), str(nq)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--_measure"]:
        print(json.dumps(measure(argv[1], Path(argv[2]), int(argv[3]))))
        return 0
    nq = 1000
    if "--queries" in argv:
        k = argv.index("--queries")
        nq = int(argv[k + 1])
        del argv[k : k + 2]
    path = Path(argv[0]) if argv else Path("/tmp/mmtrace-bench.trace")
    if not (path / "metadata.json").exists():
        record(path)
    n = counts(path)
    ntw = n.get("tree_write", 0)
    print(f"trace: {path}")
    print("events: " + ", ".join(f"{k} {v:,}" for k, v in n.items()) + f"  (total {sum(n.values()):,})")
    rd = run_measure("read", path, nq)
    pr = run_measure("prep", path, nq)
    bd = run_measure("build", path, nq)
    q = run_measure("vmas", path, nq)
    loop = bd["loop"]
    print(f"read parquet (needed columns)   {rd['seconds']:6.2f} s                        peak RSS {rd['vmhwm_mib']:7.0f} MiB")
    print(f"preprocess (vectorised windows) {pr['seconds'] - rd['seconds']:6.2f} s   (read+prep {pr['seconds']:.2f} s)    peak RSS {pr['vmhwm_mib']:7.0f} MiB")
    print(f"sequential loop                 {loop:6.2f} s   {ntw / loop:>12,.0f} tree_write/s")
    print(f"end to end (open -> final tree) {bd['seconds']:6.2f} s   {ntw / bd['seconds']:>12,.0f} tree_write/s  "
          f"peak RSS {bd['vmhwm_mib']:7.0f} MiB")
    print(f"  ({bd['n_tree_write_kept']:,} stores replayed, {bd['checkpoints']} checkpoints, "
          f"{bd['live_vmas']:,} live pieces at the end)")
    print(f"vmas(pid, at) x {q['queries']}: {q['query_time']:6.2f} s  {q['query_time'] / q['queries'] * 1e3:.1f} ms/query "
          f"(after a {q['build']:.2f} s build)  peak RSS {q['vmhwm_mib']:7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
