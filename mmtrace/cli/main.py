"""The ``mmtrace`` command: parse, call the library, map errors to exit codes.

Exit codes: 0 ok; 1 a check failed (doctor, verify); 2 usage or input error
(bad trace, no such pid, command not found); 3 recording cannot work here
(not root, no BCC, missing tracepoint); for ``record -c`` the command's own
exit status otherwise.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

__all__ = ["main"]

from ..api import DEFAULT_BUFFER_MB  # noqa: E402

EPILOG_RECORD = """\
examples:
  sudo mmtrace record -c 'python3 -c "import mmap; mmap.mmap(-1, 1 << 20)"'
  sudo mmtrace record -p 1234 --duration 10 -o web.trace
  sudo mmtrace record --duration 5            # whole system (warns)
  mmtrace summary mmtrace.data

The trace is a directory (default ./mmtrace.data; an existing one is kept as
mmtrace.data.old): metadata.json plus one Parquet table per event kind,
flushed every second.  Ctrl-C or SIGTERM stops cleanly and keeps everything.
Open it in Python with mmtrace.open(PATH).

While it records, every syscall on the host takes the kernel's tracing path
(about +45 ns each here, as with perf or bpftrace on syscall tracepoints).
Environment: MMTRACE_SYSCALL_HOOK=raw takes syscalls from raw_syscalls
instead of the per-syscall tracepoints (x86_64; the same records, but every
syscall of every process then runs a BPF program: dearer for the host).
"""


EPILOG_REPORT = """\
examples:
  mmtrace report mmtrace.data                   # -> mmtrace.data-report/index.html, *.csv, *.png
  mmtrace report web.trace -o /tmp/web --format parquet

Files: processes, changes, splits, merges, anomalies, hugetlb, vmas (one
table each: see the README section "Reports and CSV columns"), vma_count.png,
timeline-PID.png, splits_merges.png, hugetlb.png (when the trace has hugetlb
samples), index.html.  Times are CLOCK_MONOTONIC ns as in the trace.  In
Python: mmtrace.report.write_report(mmtrace.open(PATH), DIR).
Exit status: 0 ok; 1 some table or plot could not be computed (the rest is
written, the summary says which); 2 TRACE is not a readable trace.
"""


def _pids(text: str) -> list[int]:
    try:
        pids = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a pid list: {text!r} (expected e.g. 1234 or 1234,5678)")
    if not pids:
        raise argparse.ArgumentTypeError("empty pid list")
    return pids


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def _duration(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmtrace",
        description=(
            "Record what the Linux kernel does to process address spaces (maple tree writes, "
            "mmap tracepoints, the syscalls around them) with BCC, and explain it."
        ),
        epilog="Run 'mmtrace COMMAND --help' for each command. Start with 'sudo mmtrace doctor'.",
    )
    p.add_argument("--version", action="version", version=f"mmtrace {_version()}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    d = sub.add_parser(
        "doctor",
        help="check that this host can record (root, BCC, headers, BTF, tracepoints)",
        description="Check everything recording needs, one row per check with a fix for each failure. "
        "Exits 1 when recording cannot work.",
    )
    d.add_argument("--json", action="store_true", help="print the checks as JSON")

    r = sub.add_parser(
        "record",
        help="record a command, running processes, or the whole system (root)",
        description="Record maple tree, mmap, syscall and process events into a trace directory.",
        epilog=EPILOG_RECORD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tgt = r.add_mutually_exclusive_group()
    tgt.add_argument(
        "-c",
        "--command",
        metavar="'CMD ARGS'",
        help="start CMD after the probes are attached; trace it and all its descendants; "
        "stop when it exits and exit with its status. Also: mmtrace record [opts] -- CMD ARGS",
    )
    tgt.add_argument(
        "-p", "--pid", type=_pids, metavar="PID[,PID..]", help="trace running processes and their future children"
    )
    r.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds")
    r.add_argument("-o", "--output", type=Path, default=Path("mmtrace.data"), help="trace directory (default: %(default)s)")
    r.add_argument(
        "--buffer-mb",
        type=_positive_int,
        default=DEFAULT_BUFFER_MB,
        metavar="N",
        help="ring buffer size in MiB, a power of two (default: %(default)s); raise it if events are lost",
    )
    r.add_argument(
        "--all-stores",
        action="store_true",
        help="keep every maple tree event: the inner mas_wr_* event identical to its outer store "
        "(folded in the kernel by default) and writes to trees that are not a traced mm's (munmap's "
        "detach tree, tmpfs...; left out by default). Their numbers are in the trace's metadata",
    )
    r.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    r.add_argument("--dump-bpf", action="store_true", help="print the generated BPF C program and its -D flags, and exit")
    r.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    s = sub.add_parser(
        "summary",
        help="summarise a trace: processes, events by kind, syscalls, lost events",
        description="Print a short summary of a trace recorded by 'mmtrace record'.",
    )
    s.add_argument("trace", type=Path, nargs="?", default=Path("mmtrace.data"))

    rp = sub.add_parser(
        "report",
        help="write a readable report of a trace: tables (CSV/Parquet), plots, index.html",
        description="Rebuild every process's VMA tree from TRACE and write a report: a summary on the "
        "terminal (VMAs per process at start/end/peak, changes by kind, splits, merges, anomalies, lost "
        "events) and, in DIR, the tables processes, changes, splits, merges, anomalies, hugetlb, vmas "
        "(.csv or .parquet), PNG plots (VMA count over time, each busy process's address-space timeline, "
        "splits and merges over time, hugetlb reservations modeled vs the kernel's) and a self-contained "
        "index.html (images embedded, no network) to open in a browser.",
        epilog=EPILOG_REPORT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("trace", type=Path, nargs="?", default=Path("mmtrace.data"),
                    help="trace directory written by 'mmtrace record' (default: %(default)s)")
    rp.add_argument("-o", "--output", type=Path, metavar="DIR",
                    help="report directory, created if needed; files of the same names are replaced "
                    "(default: TRACE-report beside the trace, e.g. mmtrace.data-report)")
    rp.add_argument("--format", choices=("csv", "parquet"), default="csv",
                    help="table format (default: %(default)s). CSV: addresses as 0x-hex strings, lists as "
                    "'; '-separated text. Parquet: addresses as uint64, lists as lists")
    rp.add_argument("--timelines", type=int, default=4, metavar="N",
                    help="address-space timelines for the N busiest processes (default: %(default)s)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no terminal summary and no progress bar")

    v = sub.add_parser(
        "verify",
        help="check the rebuilt VMA trees against /proc/PID/maps checkpoints",
        description="Replay TRACE and compare every checkpoint in CHECKPOINTS (files written by the "
        "bundled workloads' --checkpoints, one per pid) with the model at the checkpoint's time, "
        "on (start, end, perms). Prints matches per pid and the first differences; exits 1 on any mismatch.",
    )
    v.add_argument("trace", type=Path)
    v.add_argument("checkpoints", type=Path)
    v.add_argument("--show", type=int, default=3, metavar="N", help="show the first N mismatches (default: %(default)s)")

    from .fleet import add_parser as add_fleet

    add_fleet(sub)

    dm = sub.add_parser(
        "demo",
        help="build the bundled demo workload, record it, verify the model against its checkpoints, write the report (root)",
        description="Build the bundled C demo workload (mmap, mprotect splits and merges, munmap holes, "
        "mremap, brk, threads, fork+exec, hugetlb when configured), record it with /proc/self/maps "
        "checkpoints, verify the rebuilt VMA trees against them, and write the report "
        "(OUTPUT-report/index.html).",
    )
    dm.add_argument("-o", "--output", type=Path, default=Path("mmtrace-demo.data"), help="trace directory (default: %(default)s)")
    dm.add_argument("--hugepages", type=int, default=8, metavar="N",
                    help="make sure at least N 2 MiB huge pages are reserved for the demo (default: %(default)s; 0: leave as is)")
    return p


def _version() -> str:
    from .. import __version__

    return __version__


def _err(msg: str) -> None:
    sys.stderr.write(f"mmtrace: {msg}\n")


def cmd_doctor(args) -> int:
    from .doctor import run_checks, render

    checks = run_checks()
    if args.json:
        import json

        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        print(render(checks))
    return 0 if all(c.ok or not c.required for c in checks) else 1


def cmd_record(args, argv: list[str]) -> int:
    from ..capture.recorder import RecordError, RecordOptions, record, summary_line

    command = None
    rest = list(args.argv or [])
    if rest and rest[0] == "--":
        rest = rest[1:]
    if args.command and rest:
        _err("give the command either with -c or after --, not both")
        return 2
    if args.command:
        command = shlex.split(args.command)
        if not command:
            _err("-c needs a command")
            return 2
    elif rest:
        command = rest
    if args.dump_bpf:
        from ..capture.kernel import KernelError, make_plan
        from ..capture.loader import program_source

        try:
            plan = make_plan()
        except KernelError as e:
            _err(str(e))
            return 3
        print("/* cflags: " + " ".join(plan.cflags()) + " */")
        print(program_source())
        return 0
    if not command and not args.pid:
        _err("warning: no -c or -p given: tracing the WHOLE SYSTEM (Ctrl-C to stop)")
    opts = RecordOptions(
        output=args.output,
        command=command,
        pids=args.pid or [],
        duration=args.duration,
        buffer_mb=args.buffer_mb,
        keep_inner=args.all_stores,
        progress=False if args.quiet else None,
        argv=["mmtrace", *argv],
    )
    try:
        res = record(opts)
    except RecordError as e:
        _err(str(e))
        msg = str(e)
        if "root" in msg or "BCC" in msg or "tracepoint" in msg or "BTF" in msg or "BPF" in msg:
            return 3
        return 2
    sys.stderr.write(summary_line(res) + "\n")
    if res.lost and sum(res.lost.values()):
        _err(f"warning: {sum(res.lost.values()):,} events were lost: raise --buffer-mb")
    if res.exit_status is not None:
        return res.exit_status if res.exit_status >= 0 else 128 - res.exit_status
    return 0


def cmd_summary(args) -> int:
    from ..report.summary import summarize
    from ..trace import TraceError

    try:
        print(summarize(args.trace))
    except TraceError as e:
        _err(str(e))
        return 2
    return 0


def cmd_report(args) -> int:
    import warnings

    from ..trace import TraceError

    if args.timelines < 0:
        _err("--timelines must be 0 or more")
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from ..api import open as mm_open
            from ..report import default_output, write_report
            from ..report.build import STAGES
            from ..report.progress import Progress

            trace = mm_open(args.trace)
            out = args.output or default_output(args.trace)
            res = write_report(trace, out, args.format, progress=Progress(STAGES, enabled=None if not args.quiet else False),
                               timelines=args.timelines)
            text = None if args.quiet else res.text()
    except TraceError as e:
        _err(str(e))
        return 2
    except Exception as e:  # a damaged trace fails deep in the replay: one line, not a traceback
        if os.environ.get("MMTRACE_DEBUG"):
            raise
        _err(f"{args.trace}: cannot build a report, the trace looks damaged ({type(e).__name__}: {e})")
        return 2
    for w in caught:
        _err(f"warning: {w.message}")
    if text:
        print(text)
    for name, msg in res.errors.items():
        _err(f"warning: {name}: not computed ({msg})")
    return 1 if res.errors else 0


def cmd_demo(args) -> int:
    from ..workloads import WorkloadBuildError, build

    try:
        exe = build("demo")
    except WorkloadBuildError as e:
        _err(str(e))
        return 2
    if args.hugepages > 0 and os.geteuid() == 0:
        _ensure_hugepages(args.hugepages)
    cps = Path(f"{args.output}.checkpoints")
    if cps.exists():
        import shutil

        shutil.rmtree(cps)
    cps.mkdir(parents=True)
    rc = main(["record", "-o", str(args.output), "--", str(exe), "--checkpoints", str(cps)])
    if rc != 0:
        return rc
    # The rebuilt trees against the demo's own /proc/self/maps checkpoints.
    rc = main(["verify", str(args.output), str(cps)])
    if rc != 0:
        return rc
    rc = main(["report", str(args.output)])
    _give_to_sudo_user(cps, Path(f"{args.output}-report"))
    return rc


def _give_to_sudo_user(*paths: Path) -> None:
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not (uid and gid and uid.isdigit() and gid.isdigit()):
        return
    for top in paths:
        for p in [top, *top.rglob("*")] if top.exists() else []:
            try:
                os.chown(p, int(uid), int(gid))
            except OSError:
                pass


def _ensure_hugepages(n: int) -> None:
    path = "/proc/sys/vm/nr_hugepages"
    try:
        cur = int(open(path).read().strip())
        if cur < n:
            with open(path, "w") as f:
                f.write(str(n))
    except (OSError, ValueError) as e:
        _err(f"note: could not reserve huge pages ({e}); hugetlb steps will be skipped")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # argparse.REMAINDER after options: split at "--" ourselves so that
    # 'record -o x -- cmd -a' keeps '-a' for the command.
    if "--" in argv and argv and argv[0] == "record":
        i = argv.index("--")
        args = parser.parse_args(argv[:i])
        args.argv = argv[i:]
    else:
        args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help()
        return 2
    try:
        if args.cmd == "doctor":
            return cmd_doctor(args)
        if args.cmd == "record":
            return cmd_record(args, argv)
        if args.cmd == "summary":
            return cmd_summary(args)
        if args.cmd == "report":
            return cmd_report(args)
        if args.cmd == "demo":
            return cmd_demo(args)
        if args.cmd == "fleet":
            from .fleet import run as fleet_run

            return fleet_run(args)
        if args.cmd == "verify":
            from .verify import main as verify_main

            return verify_main([str(args.trace), str(args.checkpoints), "--show", str(args.show)])
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    parser.error(f"unknown command {args.cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
