"""Fleet throughput: traces/s and events/s of ``mmtrace.fleet`` with 1 and 2 Dask workers.

    python benchmarks/fleet.py                       # root: records a churn trace; else the golden demo trace
    python benchmarks/fleet.py --trace PATH --copies 24 --rounds 3 --workers 1,2

The fleet is ``--copies`` COPIES of one real recording whose metadata.json
is rewritten to distinct host names (labelled ``benchmark_copy`` in the
metadata), in a temporary directory.  For each round and each worker
count, interleaved (1, 2, 1, 2, ...): a LocalCluster of N single-threaded
worker processes is started and mmtrace imported on each (timed apart as
start-up), then

- ``analyse``: ``mmtrace.fleet.open(DIR, client=...).analyse()``: every
  trace's replay and detectors (the report tables), one task per trace,
  results kept on the workers;
  (one task s: the median time of one trace's task, as the workers measured it);
- ``events``: ``len(fleet.events("tree_write"))`` plus the same of
  ``syscall``: the raw-event path (footers, then every part read), no replay.

Events = rows in the traces (their metadata's ``events``).  Medians over
rounds; the machine may be shared, so compare the 1- and 2-worker figures
of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "data" / "demo.trace"


def record_churn(out: Path, ops: int) -> Path:
    from mmtrace.workloads import build

    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", str(build("churn")),
                    "--seed", "5", "--ops", str(ops), "--forks", "1", "--hugetlb", "off"], check=True)
    return out


def make_fleet(src: Path, d: Path, copies: int) -> int:
    """``copies`` copies of ``src`` under ``d`` with rewritten hosts; returns events per copy."""
    meta = json.loads((src / "metadata.json").read_text())
    for i in range(copies):
        dst = d / f"bench-copy-{i:03d}.trace"
        shutil.copytree(src, dst)
        m = dict(meta, host=f"bench-host-{i % 8}",
                 benchmark_copy={"of": str(src), "note": "COPY of a real recording, host REWRITTEN for the benchmark",
                                 "recorded_host": meta.get("host")})
        (dst / "metadata.json").write_text(json.dumps(m))
    return int(sum((meta.get("events") or {}).values()))


def _warm() -> None:
    import mmtrace.fleet.tasks  # noqa: F401
    import mmtrace.model  # noqa: F401
    import mmtrace.report  # noqa: F401


def one_run(fleet_dir: Path, n: int) -> dict:
    import mmtrace.fleet as fleet

    t0 = time.perf_counter()
    client = fleet.connect(n_workers=n)
    client.run(_warm)  # imports on every worker: a long-lived cluster pays them once
    startup = time.perf_counter() - t0
    try:
        with fleet.open(fleet_dir, client=client) as fl:
            t0 = time.perf_counter()
            s = fl.analyse().summary()
            analyse = time.perf_counter() - t0
            task = float(s["analysis_s"].median())
            assert (s["status"] == "ok").all(), s[s["status"] != "ok"].to_string()
            t0 = time.perf_counter()
            rows = sum(len(fl.events(k)) for k in ("tree_write", "syscall"))
            events = time.perf_counter() - t0
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    return {"workers": n, "startup_s": startup, "analyse_s": analyse, "events_s": events, "event_rows": rows,
            "task_s": task}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trace", type=Path, help="the recording to copy (default: record churn as root, else the "
                   "golden demo trace)")
    p.add_argument("--ops", type=int, default=3000, help="churn ops when recording (default: %(default)s)")
    p.add_argument("--copies", type=int, default=24, help="traces in the fleet (default: %(default)s)")
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each worker count (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    a = p.parse_args()
    workers = [int(x) for x in a.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="mmtrace-fleet-bench-") as tmp:
        tmp = Path(tmp)
        src = a.trace
        if src is None:
            src = record_churn(tmp / "churn.trace", a.ops) if os.geteuid() == 0 else GOLDEN
        (tmp / "fleet").mkdir()
        per_copy = make_fleet(src, tmp / "fleet", a.copies)
        total = per_copy * a.copies
        print(f"fleet: {a.copies} copies of {src} ({per_copy:,} events each, {total:,} in all); "
              f"{os.cpu_count()} CPUs; rounds {a.rounds}, interleaved; load average {os.getloadavg()[0]:.1f}")
        runs = []
        for r in range(a.rounds):
            for n in workers:
                res = one_run(tmp / "fleet", n)
                res["round"] = r
                runs.append(res)
                print(f"  round {r} workers {n}: start-up {res['startup_s']:.2f} s, analyse {res['analyse_s']:.2f} s, "
                      f"events {res['events_s']:.2f} s", flush=True)
    rows = []
    for n in workers:
        mine = [x for x in runs if x["workers"] == n]
        an = statistics.median(x["analyse_s"] for x in mine)
        ev = statistics.median(x["events_s"] for x in mine)
        rows.append({"workers": n, "startup_s": statistics.median(x["startup_s"] for x in mine),
                     "analyse_s": an, "task_s": statistics.median(x["task_s"] for x in mine), "traces_per_s": a.copies / an, "events_per_s": total / an,
                     "raw_events_s": ev, "raw_rows_per_s": mine[0]["event_rows"] / ev})
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (other work on the machine slows both)")
    print("| workers | cluster start-up s | analyse s | one task s (median) | traces/s | events/s (analysed) | "
          "events() s | rows/s (events(), tree_write+syscall) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['workers']} | {x['startup_s']:.2f} | {x['analyse_s']:.2f} | {x['task_s']:.2f} | "
              f"{x['traces_per_s']:.2f} | "
              f"{x['events_per_s']:,.0f} | {x['raw_events_s']:.2f} | {x['raw_rows_per_s']:,.0f} |")
    if len(rows) > 1:
        print(f"\nspeed-up {rows[-1]['workers']} vs {rows[0]['workers']} workers (analyse): "
              f"{rows[0]['analyse_s'] / rows[-1]['analyse_s']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"loadavg_end": os.getloadavg()[0], "copies": a.copies, "events_per_copy": per_copy, "source": str(src),
                                            "runs": runs, "medians": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
