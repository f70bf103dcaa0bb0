"""The ``mmtrace`` command: parse, call the library, map errors to exit codes.

Exit codes (EXIT_CODES): 0 ok; 1 a check failed (doctor, verify), or the
trace is damaged or a report part failed (summary, report: what could be
read is shown, the damage first); 2 usage or input error (bad option, not a
readable trace, no such pid, command not found); 3 recording cannot work
here (not root, no BCC, missing tracepoint); 4 the output cannot be written
(read-only, permission denied, disk full); 70 an internal error (a bug:
``--debug`` shows the traceback); for ``record -c`` the command's own exit
status otherwise.  Every error is one line on stderr, ``mmtrace: ...``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

__all__ = ["main", "EXIT_CODES"]

EXIT_CODES = """\
exit status: 0 ok; 1 a check failed (doctor, verify), or the trace is damaged
or part of a report failed (what could be read is shown, damage first); 2 a
usage or input error (bad option, not a readable trace, no such pid, command
not found); 3 recording cannot work on this host (not root, no BCC, missing
tracepoint); 4 the output cannot be written (read-only, permission denied,
disk full); 70 an internal error (a bug: --debug shows the traceback);
record -c: the command's exit status otherwise."""

# Words a shell would act on: given to -c, which runs no shell, they would
# reach the command as arguments.
_SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "<<", "<<<", "2>", "2>>", "&>",
                              "2>&1", "|&", "(", ")", "$(", "`"})

from ..capture.loader import DEFAULT_BUFFER_MB  # noqa: E402 (no pandas: record starts faster)

EPILOG_RECORD = """\
examples:
  sudo mmtrace record -c 'python3 -c "import mmap; mmap.mmap(-1, 1 << 20)"'
  sudo mmtrace record -- sh -c 'echo hi | cat'     # -c runs no shell: ask for one
  sudo mmtrace record -p 1234 --duration 10 -o web.trace
  sudo mmtrace record --duration 5            # whole system (warns)
  mmtrace summary mmtrace.data

The trace is a directory (default ./mmtrace.data; an existing one is kept as
mmtrace.data.old): metadata.json plus one Parquet table per event kind,
flushed every second.  Ctrl-C or SIGTERM stops cleanly and keeps everything.
Open it in Python with mmtrace.open(PATH).

The command (-c or after --) is split like a shell would split words
(shlex) but run without a shell: pipes, redirections, ';' and '&&' are
refused; record 'sh -c "..."' for them.  It is started with a parent-death
signal (PR_SET_PDEATHSIG = SIGKILL): if the recorder dies (kill -9, crash)
the command is killed too, never left running untraced; its own children
are not (a clean stop, Ctrl-C or SIGTERM, passes the signal on to it).

While it records, every syscall on the host takes the kernel's tracing path
(about +45 ns each here, as with perf or bpftrace on syscall tracepoints).
Environment: MMTRACE_SYSCALL_HOOK=raw takes syscalls from raw_syscalls
instead of the per-syscall tracepoints (x86_64; the same records, but every
syscall of every process then runs a BPF program: dearer for the host).
"""


EPILOG_REPORT = """\
examples:
  mmtrace report mmtrace.data                   # -> mmtrace.data-report/index.html, *.csv
  mmtrace report web.trace -o /tmp/web --format parquet
  mmtrace report web.trace --format csv,png     # also the static PNG figures

Files: index.html, one self-contained interactive page (works offline, from
file://: address-space timeline per process with zoom, pan and hover, VMAs
and splits/merges over time, paged tables filterable by process, kind and
cause; times in seconds since the start); the tables processes, changes,
splits, merges, anomalies, hugetlb, vmas (see the README section "Reports and
CSV columns"; times are CLOCK_MONOTONIC ns as in the trace: the page shows a
decimated view, the tables every row); with png: vma_count.png,
timeline-PID.png, splits_merges.png, hugetlb.png (when the trace has hugetlb
samples).  In Python: mmtrace.report.write_report(mmtrace.open(PATH), DIR).
Exit status: 0 ok; 1 the trace is damaged (the report starts with what
could not be read; model findings after a gap are left out) or some table
or plot could not be computed (the rest is written, the summary says
which); 2 TRACE is not a readable trace; 4 DIR cannot be written.
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


def _formats(text: str) -> str:
    from ..report.build import parse_formats

    try:
        parse_formats(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return text


def _duration(text: str) -> float:
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds above 0, e.g. 5 or 0.5")
    return v


def _buffer_mb(text: str) -> int:
    v = _positive_int(text)
    from ..capture.recorder import RecordError, RecordOptions, check_options

    try:
        check_options(RecordOptions(buffer_mb=v))
    except RecordError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1])
    return v


class _Parser(argparse.ArgumentParser):
    """argparse with errors in one line (its default prints the usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mmtrace",
        description=(
            "Record what the Linux kernel does to process address spaces (maple tree writes, "
            "mmap tracepoints, the syscalls around them) with BCC, and explain it."
        ),
        epilog="Run 'mmtrace COMMAND --help' for each command. Start with 'sudo mmtrace doctor'. "
        "--debug (anywhere before --) shows the traceback behind an error.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        epilog=EPILOG_RECORD + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tgt = r.add_mutually_exclusive_group()
    tgt.add_argument(
        "-c",
        "--command",
        metavar="'CMD ARGS'",
        help="start CMD after the probes are attached; trace it and all its descendants; "
        "stop when it exits and exit with its status. Split into words like a shell would, but run "
        "without one (no pipes or redirections: -c \"sh -c '...'\"); killed if the recorder dies. "
        "Also: mmtrace record [opts] -- CMD ARGS",
    )
    tgt.add_argument(
        "-p", "--pid", type=_pids, metavar="PID[,PID..]", help="trace running processes and their future children"
    )
    r.add_argument("--duration", type=_duration, metavar="S", help="stop after S seconds")
    r.add_argument("-o", "--output", type=Path, default=Path("mmtrace.data"), help="trace directory (default: %(default)s)")
    r.add_argument(
        "--buffer-mb",
        type=_buffer_mb,
        default=DEFAULT_BUFFER_MB,
        metavar="N",
        help="ring buffer size in MiB, a power of two up to 2048 whose rings (about 1.7 N MiB in all) fit in "
        "half the available memory (default: %(default)s); raise it if events are lost",
    )
    r.add_argument(
        "--all-stores",
        action="store_true",
        help="keep every maple tree event: the inner mas_wr_* event identical to its outer store "
        "(folded in the kernel by default) and writes to trees that are not a traced mm's (munmap's "
        "detach tree, tmpfs...; left out by default). Their numbers are in the trace's metadata",
    )
    r.add_argument("-g", dest="stacks", action="store_true",
                   help="also record the user stack of each traced syscall, fork, exec and exit (off by default: "
                   "it costs the traced process, see the README's 'Call sites'); then t.stacks(), the changes' "
                   "callsite, 'mmtrace report --folded'")
    r.add_argument("--compat", action="store_true",
                   help="follow the syscalls of 32-bit (ia32) processes even when no target is a 32-bit program at "
                   "start (a script that runs one). Automatic when the command or a -p process is 32-bit, or for "
                   "the whole system; it makes every syscall of the host run two small BPF programs")
    r.add_argument("-q", "--quiet", action="store_true", help="no live progress line")
    r.add_argument("--dump-bpf", action="store_true", help="print the generated BPF C program and its -D flags, and exit")
    r.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    s = sub.add_parser(
        "summary",
        help="summarise a trace: processes, events by kind, syscalls, lost events",
        description="Print a short summary of a trace recorded by 'mmtrace record': first what of it could "
        "not be read (damaged or missing parts, with the time ranges where events may be missing) or that it "
        "did not stop cleanly. Exit status: 0 ok; 1 the trace is damaged; 2 not a readable trace.",
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
    rp.add_argument("--format", type=_formats, default="csv", metavar="FMT[,FMT]",
                    help="what to write beside index.html, comma-separated (default: %(default)s): csv or parquet "
                    "for the tables (at least one is always written; CSV: addresses as 0x-hex strings, lists as "
                    "'; '-separated text; Parquet: addresses as uint64, lists as lists), png for the static "
                    "figures (papers, terminals), e.g. --format parquet,png")
    rp.add_argument("--timelines", type=int, default=4, metavar="N",
                    help="with --format png: address-space PNGs for the N busiest processes (default: %(default)s)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no terminal summary and no progress bar")
    rp.add_argument("--folded", action="store_true",
                    help="for a trace recorded with -g: also write callsites.folded (flame graph tools' folded "
                    "stacks, weighted by the VMA changes each stack made) and callsites.speedscope.json")
    rp.add_argument("--symfs", type=Path, metavar="DIR",
                    help="look up the traced binaries under DIR (perf's --symfs: DIR/usr/lib/..., and their "
                    "debuginfo under DIR/usr/lib/debug/.build-id)")

    ex = sub.add_parser(
        "export",
        help="convert a trace for other tools: --perfetto writes Perfetto's format (ui.perfetto.dev)",
        description="Write TRACE in another tool's format. --perfetto: Perfetto's protobuf trace (open it in "
        "ui.perfetto.dev or trace_processor): a process track per traced process, each syscall a slice on its "
        "thread's track (with the call as strace shows it), each VMA tree change an instant on the process's "
        "'VMA changes' track (kind, cause, range, before/after VMAs, and the call site of a -g trace as "
        "arguments), counter tracks of VMAs and "
        "mapped bytes per process and of hugetlb reservations (kernel and model). Timestamps are the trace's "
        "CLOCK_MONOTONIC ns.",
        epilog="examples:\n  mmtrace export --perfetto mmtrace.data -o mmtrace.pftrace\n\n"
        "Exit status: 0 ok; 2 TRACE is not a readable trace, or no format given; 3 the perfetto package is missing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("trace", type=Path, nargs="?", default=Path("mmtrace.data"),
                    help="trace directory written by 'mmtrace record' (default: %(default)s)")
    ex.add_argument("--perfetto", action="store_true", help="write Perfetto's protobuf trace format")
    ex.add_argument("-o", "--output", type=Path, metavar="FILE",
                    help="output file (default: TRACE.pftrace beside the trace)")
    ex.add_argument("--symfs", type=Path, metavar="DIR",
                    help="for a trace recorded with -g: look up the traced binaries under DIR (as 'report --symfs')")

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


def _split_command(text: str) -> list[str] | str:
    """-c's text as argv, or the message refusing it."""
    if not text.strip():
        return ("-c got an empty command (an unset $CMD?): give the command to record, or leave out -c "
                "(and -p) to record the whole system")
    try:
        argv = shlex.split(text)
    except ValueError as e:
        return (f"-c {text!r}: cannot split it into words ({e}): check its quotes, or give the command "
                "after -- instead")
    ops = [w for w in argv if w in _SHELL_OPERATORS]
    if ops:
        return (f"-c {text!r}: -c runs no shell, so {ops[0]!r} would reach {argv[0]} as an argument: "
                f"record a shell instead, -c \"sh -c {shlex.quote(text)}\"")
    return argv


def cmd_record(args, argv: list[str]) -> int:
    from ..capture.recorder import RecordError, RecordOptions, record, summary_line

    command = None
    rest = list(args.argv or [])
    dashdash = bool(rest and rest[0] == "--")
    if dashdash:
        rest = rest[1:]
    if args.command is not None and (rest or dashdash):
        _err("give the command either with -c or after --, not both")
        return 2
    if args.command is not None:
        command = _split_command(args.command)
        if isinstance(command, str):
            _err(command)
            return 2
    elif rest:
        if not rest[0].strip():
            _err("the command after -- is empty (an unset $CMD?): give the command to record")
            return 2
        command = rest
    elif dashdash:
        _err("nothing after --: give the command to record, or leave out -- to record the whole system")
        return 2
    if args.dump_bpf:
        from ..capture.kernel import KernelError, make_plan
        from ..capture.loader import program_source
        from ..capture.session import Target, compat_reason

        try:
            # the plan record would make for these targets (Session: ia32 hooks only where needed)
            plan = make_plan(compat_off=compat_reason(Target(command=command, pids=args.pid or []),
                                                      force=args.compat))
        except KernelError as e:
            _err(str(e))
            return 3
        from ..capture.stacks import stack_cflags

        print("/* cflags: " + " ".join(plan.cflags() + (stack_cflags() if args.stacks else [])) + " */")
        print(program_source())
        return 0
    opts = RecordOptions(
        output=args.output,
        command=command,
        pids=args.pid or [],
        duration=args.duration,
        buffer_mb=args.buffer_mb,
        keep_inner=args.all_stores,
        stacks=args.stacks,
        compat=args.compat,
        progress=False if args.quiet else None,
        argv=["mmtrace", *argv],
    )
    try:
        from ..capture.recorder import check_options

        check_options(opts)
        if not command and not args.pid:
            _err("warning: no -c or -p given: tracing the WHOLE SYSTEM (Ctrl-C to stop)")
        res = record(opts)
    except RecordError as e:
        _err(str(e))
        return e.code
    sys.stderr.write(summary_line(res) + "\n")
    if res.lost and sum(res.lost.values()):
        _err(f"warning: {sum(res.lost.values()):,} events were lost: raise --buffer-mb")
    if res.exit_status is not None:
        return res.exit_status if res.exit_status >= 0 else 128 - res.exit_status
    return 0


def _shown_warnings(caught) -> list[str]:
    """Warnings worth a line: not the damage and incompleteness the output shows first."""
    from ..trace import DamagedTraceWarning, IncompleteTraceWarning

    skip = (DamagedTraceWarning, IncompleteTraceWarning)
    out = []
    for w in caught:
        if issubclass(w.category, skip) or "damaged part skipped" in str(w.message):
            continue
        if str(w.message) not in out:
            out.append(str(w.message))
    return out


def cmd_summary(args) -> int:
    import warnings

    from ..report.summary import summarize
    from ..trace import TraceError, TraceFile

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = TraceFile(args.trace)
            text = summarize(t)
    except TraceError as e:
        _err(str(e))
        return 2
    print(text)
    for w in _shown_warnings(caught):
        _err(f"warning: {w}")
    return 1 if t.damaged else 0


def _make_dir(out: Path) -> list[Path]:
    """Create ``out`` (and parents); the directories created, top first; OSError if it cannot be written."""
    new = [q for q in [out, *out.parents] if not q.exists()][::-1]
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(13, "Permission denied", str(out))
    return new


def cmd_report(args) -> int:
    import warnings

    from ..trace import TraceError

    if args.timelines < 0:
        _err("--timelines must be 0 or more")
        return 2
    trace = None
    out = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from ..api import open as mm_open
            from ..report import default_output, write_report
            from ..report.build import STAGES
            from ..report.progress import Progress

            trace = mm_open(args.trace)
            if args.symfs is not None:
                if not args.symfs.is_dir():
                    _err(f"--symfs {args.symfs}: not a directory")
                    return 2
                trace.symfs = str(args.symfs)
            out = args.output or default_output(args.trace)
            try:
                created = _make_dir(out)
            except OSError as e:
                _err(f"cannot write the report to {out}: {e.strerror or e}: choose another -o")
                return 4
            res = write_report(trace, out, args.format, progress=Progress(STAGES, enabled=None if not args.quiet else False),
                               timelines=args.timelines)
            if args.folded:  # record -g's stacks for flame graph tools
                from ..detect.callsites import has_stacks, write_exports

                if not has_stacks(trace):
                    _err(f"warning: --folded: {args.trace} was recorded without -g: it has no stacks")
                res.files.update(write_exports(trace, out, ch=res.data.safe("changes")))
            text = None if args.quiet else res.text()
    except TraceError as e:
        _err(str(e))
        return 2
    except OSError as e:
        if _debug():
            raise
        _err(f"cannot write the report to {out}: {e.strerror or e} ({e.filename or ''}): free space or choose another -o")
        return 4
    except Exception as e:  # a damaged trace can fail deep in the replay: one line, not a traceback
        if _debug():
            raise
        if trace is not None and trace.damaged:
            _err(f"{args.trace}: the trace is damaged ({trace.damage[0]}) and the report failed on it "
                 f"({type(e).__name__}: {e})")
            return 1
        raise
    # Under sudo the report is the user's: the directories made for it and
    # the files written (an existing DIR itself is left as it was).
    written = [*res.files.values(), *(p for p, _ in res.images.values()), *([res.index] if res.index else [])]
    _give_to_sudo_user(*created, *written, recursive=False)
    for w in _shown_warnings(caught):
        _err(f"warning: {w}")
    if text:
        print(text)
    for name, msg in res.errors.items():
        _err(f"warning: {name}: not computed ({msg})")
    if trace.damaged:
        _err(f"warning: {args.trace} is damaged: {len(trace.damage)} problem(s), the first: {trace.damage[0]}")
    return 1 if res.errors or trace.damaged else 0


def cmd_export(args) -> int:
    from ..trace import TraceError

    if not args.perfetto:
        _err("export: choose a format: --perfetto")
        return 2
    out = args.output or args.trace.with_name(args.trace.name.rstrip("/") + ".pftrace")
    try:
        from ..api import open as mm_open
        from ..report.perfetto import require_perfetto, write_perfetto

        require_perfetto()
        if args.symfs is not None and not args.symfs.is_dir():
            _err(f"--symfs {args.symfs}: not a directory")
            return 2
        trace = mm_open(args.trace)
        if args.symfs is not None:
            trace.symfs = str(args.symfs)
        res = write_perfetto(trace, out)
    except ImportError as e:
        _err(str(e))
        return 3
    except TraceError as e:
        _err(str(e))
        return 2
    except OSError as e:
        _err(f"{out}: {e.strerror or e}")
        return 2
    except Exception as e:  # a damaged trace fails deep in the replay: one line, not a traceback
        if os.environ.get("MMTRACE_DEBUG"):
            raise
        _err(f"{args.trace}: cannot export, the trace looks damaged ({type(e).__name__}: {e})")
        return 2
    _give_to_sudo_user(out)
    sys.stderr.write(f"wrote {out} ({res.bytes / 1e6:.1f} MB: {res.processes} processes, {res.threads} threads, "
                     f"{res.syscalls:,} syscalls, {res.changes:,} changes); open it in ui.perfetto.dev\n")
    return 0


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
    _give_to_sudo_user(cps)
    return rc


def _give_to_sudo_user(*paths: Path, recursive: bool = True) -> None:
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not (uid and gid and uid.isdigit() and gid.isdigit()):
        return
    for top in paths:
        top = Path(top)
        for p in ([top, *top.rglob("*")] if recursive else [top]) if top.exists() else []:
            try:
                os.chown(p, int(uid), int(gid))
            except OSError:
                pass


def _ensure_hugepages(n: int) -> None:
    from ..capture.host import raise_hugepages

    try:
        raise_hugepages(n)
    except (OSError, ValueError) as e:
        _err(f"note: could not reserve huge pages ({e}); hugetlb steps will be skipped")


def _debug() -> bool:
    return bool(os.environ.get("MMTRACE_DEBUG"))


def main(argv: list[str] | None = None) -> int:
    from ..trace.pool import use_system_allocator

    use_system_allocator()  # before anything imports pyarrow (trace/pool.py: the report's peak RSS)
    argv = list(sys.argv[1:] if argv is None else argv)
    head = argv[: argv.index("--")] if "--" in argv else argv
    if "--debug" in head:  # anywhere before --: full tracebacks (also MMTRACE_DEBUG=1)
        argv.remove("--debug")
        os.environ["MMTRACE_DEBUG"] = "1"
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 - one line, not a traceback (--debug shows it)
        if _debug():
            raise
        from ..trace import TraceError

        if isinstance(e, TraceError):
            _err(str(e))
            return 2
        if isinstance(e, OSError):
            _err(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
            return 4
        _err(f"internal error: {type(e).__name__}: {e} (run again with --debug for the traceback, and report it)")
        return 70


def _main(argv: list[str]) -> int:
    parser = build_parser()
    # argparse.REMAINDER after options: split at "--" ourselves so that
    # 'record -o x -- cmd -a' keeps '-a' for the command.
    try:
        if "--" in argv and argv and argv[0] == "record":
            i = argv.index("--")
            args = parser.parse_args(argv[:i])
            args.argv = argv[i:]
        else:
            args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or the one-line usage error already printed
        return e.code if isinstance(e.code, int) else 2
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
        if args.cmd == "export":
            return cmd_export(args)
        if args.cmd == "fleet":
            from .fleet import run as fleet_run

            return fleet_run(args)
        if args.cmd == "verify":
            from .verify import main as verify_main

            return verify_main([str(args.trace), str(args.checkpoints), "--show", str(args.show)])
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    parser.error(f"unknown command {args.cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
