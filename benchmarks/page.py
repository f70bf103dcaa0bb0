#!/usr/bin/env python3
"""The report page on a big trace: its size, how long it takes to build, and
how long headless Chromium takes to load and draw it.

Without --trace, first records benchmarks/workloads/mmloop.c (mmap 16 pages
+ mprotect 4 + munmap, ~9 events per loop) with

    mmtrace record -q -o TMP -- mmloop -n LOOPS       (default 250,000 loops: ~2.3 M events)

Then, in this process:

  tables      ReportData: changes, splits, merges, hugetlb, anomalies, VMAs over
              time (the replay; what 'mmtrace report' computes before any page:
              timed apart, it is not the page's cost)
  page build  mmtrace.report.html.write_index on those tables (decimation and
              Bokeh serialisation), --repeat times
  png build   the static figures of --format png, once, for comparison
  page load   a fresh headless Chromium per run (Debian chromium + chromedriver,
              Selenium) opening index.html from file://, until Bokeh has built
              every view and the timeline's canvas is drawn: performance.now()
              at that moment (navigation start = 0), --repeat runs, median;
              and the CPU time the browser's processes used meanwhile (/proc),
              which a busy shared machine inflates far less than wall time

Prints the figures (and --json FILE).  Needs root only to record; the browser
needs ./setup.sh (chromium, chromium-driver, the browser extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGET_MB, TARGET_LOAD_S = 20.0, 5.0  # issue 15's targets


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  sudo .venv/bin/python benchmarks/page.py\n"
                                       "  .venv/bin/python benchmarks/page.py --trace mmtrace.data")
    p.add_argument("--trace", type=Path, help="use this trace instead of recording one (no root needed)")
    p.add_argument("--loops", type=int, default=250_000, help="mmloop iterations to record (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="page builds and browser loads (default: %(default)s)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep the trace and the report at DIR")
    p.add_argument("--mmtrace", help="mmtrace CLI (default: next to this Python, or .venv/bin/mmtrace)")
    p.add_argument("--tmpdir", help="where the trace is recorded (default: $TMPDIR or /tmp)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for the recording (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return p.parse_args(argv)


def record(args, work: Path) -> Path:
    C.require_root()
    mm_cli = C.find_mmtrace(args.mmtrace)
    exe = C.compile_workloads(work, ["mmloop"])["mmloop"]
    out = work / "mmloop.trace"
    print(f"recording {args.loops:,} mmloop loops into {out} ...", file=sys.stderr)
    r = C.run([mm_cli, "record", "-q", "-o", str(out), "--", str(exe), "-n", str(args.loops)], timeout=args.timeout)
    if r.returncode != 0:
        sys.exit(f"recording failed (exit {r.returncode}):\n{r.stderr}")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    work = C.make_tmpdir(args.tmpdir, "mmtrace-page-")
    try:
        import matplotlib.pyplot as plt

        import mmtrace
        from mmtrace.report import ReportData, plots
        from mmtrace.report.browser import chromium, cpu_seconds, load
        from mmtrace.report.html import write_index

        path = args.trace or record(args, work)
        out = (args.keep or work) / "report"
        out.mkdir(parents=True, exist_ok=True)
        t = mmtrace.open(path)
        events = sum(int(v) for v in (t.metadata.get("events") or {}).values())
        rd = ReportData(t)
        t0 = time.monotonic()
        for name in ("changes", "splits", "merges", "hugetlb", "anomalies", "vma_counts", "processes"):
            rd.safe(name)
        tables_s = time.monotonic() - t0
        print(f"tables: {tables_s:.1f} s", file=sys.stderr)
        builds = []
        for _ in range(args.repeat):
            t0 = time.monotonic()
            page = write_index(rd, out, files={})
            builds.append(time.monotonic() - t0)
        size_mb = page.stat().st_size / 1e6
        t0 = time.monotonic()
        for fn, name in ((plots.vma_count, "vma_count.png"), (plots.splits_merges, "splits_merges.png"),
                         (lambda r, p: plots.address_timeline(r, None, p), "timeline.png")):
            plt.close(fn(rd, out / name).figure)
        png_s = time.monotonic() - t0
        loads, loadavg, cpus = [], [], []
        for _ in range(args.repeat):
            loadavg.append(os.getloadavg()[0])
            with chromium() as d:  # a fresh browser each time: nothing cached
                c0 = cpu_seconds(d)
                loads.append(load(d, page, timeout=300))
                cpus.append(cpu_seconds(d) - c0)
                errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
        res = {"trace": str(path), "events": events, "changes": len(rd.changes()), "vma_lifetimes": len(rd.vmas()),
               "tables_s": tables_s, "page_build_s": statistics.median(builds), "page_build_runs": builds,
               "png_build_s": png_s, "page_mb": size_mb, "load_s": statistics.median(loads), "load_runs": loads,
               "browser_errors": errors, "loadavg_1min": loadavg,
               "load_cpu_s": statistics.median(cpus), "load_cpu_runs": cpus}
        print()
        print(f"Report page of {path}: {events:,} events, {res['changes']:,} changes, "
              f"{res['vma_lifetimes']:,} VMA lifetimes (shared machine: medians of {args.repeat} runs; "
              f"1-minute load average before the loads: {', '.join(f'{x:.1f}' for x in loadavg)} on "
              f"{os.cpu_count()} CPUs)")
        print(C.table(["measure", "value", "target"], [
            ["page size", f"{size_mb:.1f} MB", f"< {TARGET_MB:g} MB"],
            ["page load in Chromium (to drawn)", f"{res['load_s']:.2f} s (runs {', '.join(f'{x:.2f}' for x in loads)})",
             f"< {TARGET_LOAD_S:g} s"],
            ["browser CPU time of that load (all its processes)",
             f"{res['load_cpu_s']:.2f} s (runs {', '.join(f'{x:.2f}' for x in cpus)})", ""],
            ["page build (write_index)", f"{res['page_build_s']:.1f} s", ""],
            ["tables (ReportData, replay)", f"{tables_s:.1f} s", "issue 10"],
            ["3 PNG figures (--format png)", f"{png_s:.1f} s", ""],
            ["browser console errors", str(len(errors)), "0"],
        ], "lll"))
        C.write_json(args.json, {"machine": C.machine(), "args": vars(args), "page": res})
        ok = size_mb < TARGET_MB and res["load_s"] < TARGET_LOAD_S and not errors
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
