"""``mmtrace fleet report DIR... -o OUT``: many traces analysed on Dask (the ``fleet`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  mmtrace fleet report /traces/ -o fleet-report           # every trace below /traces, LocalCluster
  mmtrace fleet report 'hosts/*/web.trace' -o out --scheduler tcp://10.0.0.5:8786

DIR: a trace, a directory holding traces (searched recursively), or a glob
pattern.  Each trace is one Dask task (open, replay, detectors).  Without
--scheduler a LocalCluster with one single-threaded worker process per core
runs here; with it, the cluster's workers need mmtrace installed and read
access to the traces at the same paths (start them with 'dask worker ADDR
--nthreads 1': the analyses hold the GIL, and a trace's warnings, e.g. a
damaged part, are told apart per process).  The dashboard address is printed.
Files: parquet/TABLE/host=HOST/part-N.parquet (one dataset per table:
processes, changes, splits, merges, anomalies, hugetlb, vmas, vma_counts,
with columns trace, host, boot_id, kernel added), summary.csv (one row per
trace, failed ones with their reason), vma_counts.png, splits_merges.png,
anomalies.png, index.html.  In Python: mmtrace.fleet.open(PATHS).
Exit status: 0 every trace analysed cleanly; 1 some trace failed, was
damaged, or some table or plot could not be written (the rest is written);
2 usage error, no trace found, Dask missing (pip install 'mmtrace[fleet]'),
or the scheduler cannot be reached.
"""


def add_parser(sub) -> None:
    """Add ``fleet`` (with its ``report`` subcommand) to the top-level subparsers."""
    f = sub.add_parser("fleet", help="analyse many traces (hosts, or one host over time) on Dask",
                       description="Analyse many traces at once on a Dask cluster (the 'fleet' extra).")
    fs = f.add_subparsers(dest="fleet_cmd", metavar="COMMAND")
    r = fs.add_parser("report", help="analyse every trace and write one Parquet dataset, a summary and plots",
                      description="Analyse every trace (one Dask task each: replay and detectors) and write the "
                      "fleet's tables as one Parquet dataset per table, partitioned by host, a CSV summary and "
                      "cross-host plots.",
                      epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("dirs", nargs="+", metavar="DIR", help="traces, directories of traces or glob patterns")
    r.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="report directory (created)")
    r.add_argument("--scheduler", metavar="ADDR", help="use the running Dask cluster at ADDR (tcp://HOST:PORT)")
    r.add_argument("--workers", type=int, metavar="N",
                   help="workers of the LocalCluster (default: one per core; ignored with --scheduler)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")


def _err(msg: str) -> None:
    sys.stderr.write(f"mmtrace: {msg}\n")


def run(args) -> int:
    """Run ``mmtrace fleet ...``; returns the exit status."""
    if args.fleet_cmd != "report":
        _err("fleet: give a command: mmtrace fleet report DIR... -o OUT")
        return 2
    if args.workers is not None and args.workers <= 0:
        _err("fleet: --workers must be positive")
        return 2
    try:
        from ..fleet import FleetError, open as fleet_open
    except ImportError as e:  # mmtrace.fleet itself imports Dask lazily: this is a broken install
        _err(f"fleet: {e}")
        return 2
    from ..fleet.report import STAGES
    from ..report.progress import Progress

    def show(row: dict) -> None:
        if row.get("status") == "failed":
            progress.close()
            _err(f"fleet: {row['trace']}: not analysed: {row.get('error')}")

    try:
        fl = fleet_open(args.dirs, scheduler=args.scheduler, n_workers=args.workers)
    except FleetError as e:
        _err(f"fleet: {e}")
        return 2
    with fl:
        for spec, why in fl.missing:
            _err(f"fleet: warning: {spec}: {why}")
        if not args.quiet:
            where = args.scheduler or f"a LocalCluster of {len(fl.client.scheduler_info()['workers'])} workers"
            _err(f"fleet: {len(fl.paths)} traces on {where}"
                 + (f"; dashboard: {fl.dashboard}" if fl.dashboard else ""))
        progress = Progress(STAGES, enabled=False if args.quiet else None)
        try:
            fl.analyse(progress=progress, on_result=show)
            rep = fl.write_report(args.output, progress=progress)
        finally:
            progress.close()
    s = rep.summary
    for r in s[s["status"].isin(["damaged", "partial"])].itertuples(index=False):
        _err(f"fleet: warning: {r.trace}: {r.status}: {r.error or r.warnings}")
    for name, msg in rep.errors.items():
        _err(f"fleet: warning: {name}: not written ({msg})")
    if not args.quiet:
        print(rep.text())
    return 0 if (s["status"] == "ok").all() and not rep.errors and not fl.missing else 1
