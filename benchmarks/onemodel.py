#!/usr/bin/env python3
"""Throughput and peak RSS of the analyses that explain a trace (issue 10 targets).

    .venv/bin/python benchmarks/onemodel.py --trace A.data [--trace B.data] [--code DIR ...]

Each measurement runs in its own Python subprocess (peak RSS = VmHWM of that
process), ``--repeat`` times; medians of the times, the largest peak RSS:

  changes     mmtrace.open(T).changes()                        events/s
  stream      mmtrace.model.iter_changes(T), rows counted and dropped: the bounded-memory pass
  processes   mmtrace.open(T).processes() (split/merge counts)  events/s
  csv         changes table -> CSV with pyarrow.csv             rows/s (formatting + write, not changes())
              (mmtrace.model.tables.write_changes_csv; older code: cells str()-formatted in Python)
  report      python -m mmtrace report T -o TMP (end to end)   events/s

events = every event of the trace (``metadata.json`` counts).  Both wall time
and the subprocess's own CPU time are shown: on a loaded machine the latter
(``per CPU s``) moves less (the report's CPU time excludes nothing it spawns:
it spawns nothing).  ``--code DIR``
runs the measurements with DIR first on sys.path (e.g. an export of an older
commit), so old and new code can be measured side by side, interleaved
(A B A B): figures taken on a shared machine are noisy, compare ratios.
No root needed (record the traces with benchmarks/workloads/mmloop.c first:
``sudo mmtrace record -o T -- mmloop -n 280000`` is about 2.5 M events).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURES = ("changes", "stream", "processes", "csv", "report")


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _events(path: Path) -> int:
    md = json.loads((path / "metadata.json").read_text())
    return int(sum((md.get("events") or {}).values()))


def measure(which: str, path: Path) -> dict:
    """One measurement in this process; prints a JSON line."""
    import mmtrace

    out: dict = {"measure": which, "events": _events(path)}
    if which == "changes":
        t0, c0 = time.perf_counter(), time.process_time()
        df = mmtrace.open(path).changes()
        out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, rows=len(df))
    elif which == "stream":
        from mmtrace.model import iter_changes

        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(len(df) for df in iter_changes(mmtrace.open(path)))
        out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, rows=n)
    elif which == "processes":
        t0, c0 = time.perf_counter(), time.process_time()
        df = mmtrace.open(path).processes()
        out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, rows=len(df), splits=int(df["splits"].sum()),
                   merges=int(df["merges"].sum()))
    elif which == "csv":
        ch = mmtrace.open(path).changes()
        with tempfile.TemporaryDirectory() as d:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                from mmtrace.model.tables import write_changes_csv
            except ImportError:  # older code: format the cells in Python, write with pyarrow
                import pyarrow as pa
                import pyarrow.csv as pcsv

                def write_changes_csv(df, p):
                    flat = df.copy()
                    for c in flat.columns:
                        if flat[c].dtype == object and c not in ("cause", "kind", "syscall"):
                            flat[c] = flat[c].map(str)
                    pcsv.write_csv(pa.Table.from_pandas(flat, preserve_index=False), p)
            write_changes_csv(ch, f"{d}/changes.csv")
            out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, rows=len(ch), mb=os.path.getsize(f"{d}/changes.csv") / 2**20)
    elif which == "report":
        from mmtrace.cli.main import main

        with tempfile.TemporaryDirectory() as d:
            t0, c0 = time.perf_counter(), time.process_time()
            rc = main(["report", "-q", str(path), "-o", d])
            out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0, rc=rc)
    out["peak_rss_mb"] = _hwm_mb()
    print("RESULT " + json.dumps(out), flush=True)
    return out


def run_one(which: str, path: Path, code: str | None, timeout: float) -> dict:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = code + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        r = subprocess.run([sys.executable, __file__, "--_measure", which, "--trace", str(path)], env=env,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"measure": which, "error": f"timeout after {timeout:.0f} s"}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"measure": which, "error": (r.stderr.strip().splitlines() or ["no result"])[-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, action="append", required=True, help="trace(s) to measure")
    ap.add_argument("--code", action="append", default=[],
                    help="a source tree to put first on sys.path (repeat to compare; default: the installed mmtrace)")
    ap.add_argument("--measure", action="append", choices=MEASURES, help="only these (default: all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--_measure", choices=MEASURES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._measure:
        measure(a._measure, a.trace[0])
        return 0
    codes = a.code or [""]
    results = []
    for path in a.trace:
        for which in a.measure or MEASURES:
            runs: dict[str, list] = {c: [] for c in codes}
            for _ in range(a.repeat):
                for c in codes:  # interleaved: A B A B
                    runs[c].append(run_one(which, path, c or None, a.timeout))
            for c in codes:
                ok = [r for r in runs[c] if "error" not in r]
                row = {"trace": str(path), "code": c or "installed", "measure": which, "runs": len(runs[c])}
                if not ok:
                    row["error"] = runs[c][0].get("error")
                else:
                    s = statistics.median(r["seconds"] for r in ok)
                    cpu = statistics.median(r.get("cpu") or float("nan") for r in ok)
                    n = ok[0]["rows"] if which == "csv" else ok[0]["events"]
                    row.update(seconds=s, cpu=cpu, per_cpu_s=n / cpu if cpu else None, per_s=n / s if s else None, unit="rows/s" if which == "csv" else "events/s",
                               events=ok[0]["events"], rows=ok[0].get("rows"),
                               peak_rss_mb=max(r["peak_rss_mb"] for r in ok),
                               extra={k: v for k, v in ok[0].items() if k in ("splits", "merges", "rc")})
                results.append(row)
                if "error" in row:
                    print(f"{path.name:>12} {row['code']:>24} {which:>10}: {row['error']}", flush=True)
                else:
                    print(f"{path.name:>12} {row['code']:>24} {which:>10}: {row['seconds']:8.2f} s "
                          f"{row['per_s']:>12,.0f} {row['unit']:<8} (CPU {row['cpu']:7.2f} s: {row['per_cpu_s']:>11,.0f}) peak RSS {row['peak_rss_mb']:7,.0f} MB "
                          f"({row['events']:,} events{', ' + str(row['extra']) if row['extra'] else ''})", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
