#!/usr/bin/env python3
"""Tracing overhead: mmtrace vs bpftrace vs perf on the same tracepoints.

Two workloads (benchmarks/workloads/, compiled with cc -O2 into a temp dir):

  mmloop    mmap 16 pages + mprotect the middle 4 + munmap, N times (µs/loop)
  forkexec  fork + execve("/bin/true") + waitpid, N times (µs/iteration)
  getppid   getppid(), N times: a syscall mmtrace does not follow, i.e. what
            every other syscall pays once syscalls are hooked (µs/call)
  startup   /bin/true: the tool's start-up and stop, i.e. `mmtrace record -c
            true` wall time (and perf's, bpftrace's); its "peak RSS" too
  idle      sleep --idle-s seconds: the tool's peak RSS while nothing happens

each run, interleaved round after round (untraced, mmtrace, bpftrace, perf,
untraced, mmtrace, ...), under:

  untraced  the bare workload
  mmtrace   mmtrace record -q -o TMP -- CMD          (default settings)
  bpftrace  bpftrace -o TMP -c CMD SCRIPT: every field of every tracepoint
            mmtrace records, printf'ed one line per event to a file, for
            the pid tree of -c CMD (/@t[pid]/, seeded with cpid, grown at
            sched_process_fork) -- what "capturing" means with bpftrace
  perf      perf record -e <the same tracepoints> -o TMP -- CMD
  mmtrace-all-stores  (not run by default; add it to --tools) mmtrace record
            --all-stores: keeps the inner mas_wr_* event of each store that
            mmtrace by default folds in the kernel, i.e. as many ma_write
            events as perf and bpftrace get
  mmtrace-bystander  (opt-in too) the bare workload while mmtrace records
            another process (`sleep`): what recording costs the rest of a
            host, whose every syscall and maple tree write now runs mmtrace's
            filters
  mmtrace-empty-programs  (opt-in too) mmtrace record with
            MMTRACE_EMPTY_PROGRAMS=1: every hook attached, every program
            returning at once: the floor any recorder of these events pays
  mmtrace-without-GROUP  (opt-in too) mmtrace record with
            MMTRACE_EMPTY_PROGRAMS=GROUP: every hook attached, the programs
            of that group returning at once, the others recording: what the
            group costs is mmtrace's CPU µs/iter less this one's.  GROUP is
            one of capture/loader.py EMPTY_GROUPS (--help lists the tools;
            collectors/compat.h says which programs each group has)
  mmtrace-cold  (opt-in too; startup workload only) mmtrace record with an
            empty module cache (MMTRACE_CACHE_DIR of its own): BCC compiles;
            and, before each run, the page cache of every file the recorder
            and the compiler read is dropped (posix_fadvise DONTNEED: Python,
            the venv, BCC, LLVM/clang, the kernel headers; pages another
            process has mapped stay): a cold start as after a reboot
  mmtrace-g  (opt-in too) mmtrace record -g: also the user stack of every
            traced syscall, fork, exec and exit (collectors/stacks.bpf.c)
  mmtrace-raw-syscalls  (opt-in too) mmtrace record with
            MMTRACE_SYSCALL_HOOK=raw: syscalls through raw_syscalls:sys_enter/
            sys_exit (every syscall of the host runs a program, which keeps
            ours by number) instead of the per-syscall tracepoints
  mmtrace-compare  (opt-in too; needs --compare CLI) mmtrace record with
            another build's CLI (e.g. main's .venv/bin/mmtrace): an A/B of two
            builds interleaved in one run, each against the same floor

The tracepoints are those mmtrace records and this kernel has (read from
tracefs): maple_tree:ma_write, ma_op, every mmap:*, syscalls:sys_enter/exit_
of mmap munmap mprotect mremap brk madvise execve, and
sched:sched_process_fork/exec/exit.  mmtrace attaches ma_write/ma_op as raw
tracepoints (to read mas->tree and the VMA), the others as tracepoints.

The workload times itself (CLOCK_MONOTONIC around the timed loop, after a
warm-up), so tool start-up (BCC/LLVM compile, attach) is not in µs/iter; it
is in "wall s".  Reported per workload and tool: median µs/iter, ratio to
the untraced median, events captured, lost events (mmtrace: t.lost of the
trace; perf: LOST_SAMPLES of `perf report --stats`; bpftrace: its "Lost N
events" messages, which go to the -o file, and stderr) and the tool's peak RSS.

Needs root.  bpftrace and perf are Debian packages (apt-get install bpftrace
linux-perf); a missing tool is reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.REPO))
from mmtrace.capture.loader import EMPTY_ENV, EMPTY_GROUPS  # noqa: E402

TOOLS = ["untraced", "mmtrace", "bpftrace", "perf"]
# mmtrace with one program group emptied: tool -> the group.
WITHOUT_TOOLS = {f"mmtrace-without-{g}": g for g in EMPTY_GROUPS}
# Opt-in with --tools (see the docstring).
EXTRA_TOOLS = ["mmtrace-all-stores", "mmtrace-raw-syscalls", "mmtrace-bystander", "mmtrace-empty-programs",
               *WITHOUT_TOOLS, "mmtrace-cold", "mmtrace-g", "mmtrace-compare"]
WORKLOADS = ["mmloop", "forkexec", "getppid", "startup", "idle"]
# Workloads that time nothing themselves: only the tool's wall time and RSS count.
FOOTPRINT = ("startup", "idle")
# bpftrace 0.17 prints "Lost N events" to its *output* stream: with -o FILE that is the
# file, not stderr (seen here with BPFTRACE_PERF_RB_PAGES=1); both are read.
_BT_LOST = re.compile(r"^Lost (\d+) events", re.M)
_BT_EVENT = re.compile(r"^\d+ \d+ \d+ \d+ \w+", re.M)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: sudo .venv/bin/python benchmarks/overhead.py --rounds 5",
    )
    p.add_argument("--rounds", type=int, default=5, help="runs per workload and tool, interleaved (default: %(default)s)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list of %(default)s")
    p.add_argument("--tools", default=",".join(TOOLS),
                   help=f"comma list of %(default)s (also: {','.join(EXTRA_TOOLS)})")
    p.add_argument("--mmloop-iters", type=int, default=100_000, help="mmloop iterations per run (default: %(default)s)")
    p.add_argument("--forkexec-iters", type=int, default=1000, help="forkexec iterations per run (default: %(default)s)")
    p.add_argument("--getppid-iters", type=int, default=2_000_000, help="getppid calls per run (default: %(default)s)")
    p.add_argument("--idle-s", type=float, default=3.0, help="seconds of the idle workload (default: %(default)s)")
    p.add_argument("--mmtrace", help="mmtrace CLI (default: next to this Python, or .venv/bin/mmtrace)")
    p.add_argument("--compare", metavar="CLI", help="the mmtrace CLI of another build, run as tool mmtrace-compare")
    p.add_argument("--perf-lost", choices=["stats", "dump"], default="stats",
                   help="how to count perf's lost samples: 'perf report --stats' (fast) or sum of "
                        "PERF_RECORD_LOST in 'perf report -D' (slow) (default: %(default)s)")
    p.add_argument("--tmpdir", help="where traces are written (default: $TMPDIR or /tmp); removed after each run")
    p.add_argument("--timeout", type=float, default=600, help="seconds before one run is killed (default: %(default)s)")
    p.add_argument("--quiet-wait", type=float, default=30, metavar="S",
                   help="before each run, wait up to S seconds for other tracers on the machine to finish "
                        "(runs that still overlap one are flagged) (default: %(default)s)")
    p.add_argument("--noise-limit", type=float, default=0.25, metavar="CORES",
                   help="a run is 'noisy' if other processes kept more than CORES cores busy on average during "
                        "it (from /proc/stat minus the run's own CPU time) or another tracer was active; "
                        "medians use only clean runs when there are at least 3 (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write all runs and the summary as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="print each run as it finishes")
    return p.parse_args(argv)


def tool_status(mmtrace_cli: str, compare_cli: str | None = None) -> tuple[dict[str, str | None], dict[str, str]]:
    """({tool: None if usable, else why not}, {tool: version})."""
    st = {t: None for t in ["untraced", "mmtrace"] + EXTRA_TOOLS}
    ver = {}
    r = C.run([mmtrace_cli, "--version"], timeout=60)
    ver["mmtrace"] = (r.stdout or r.stderr).strip()
    if compare_cli:
        r = C.run([compare_cli, "--version"], timeout=60)
        ver["mmtrace-compare"] = f"{compare_cli}: {(r.stdout or r.stderr).strip()}"
        if r.returncode != 0:
            st["mmtrace-compare"] = f"{compare_cli} --version failed"
    else:
        st["mmtrace-compare"] = "no --compare CLI given"
    for tool, pkg, vargs in (("bpftrace", "bpftrace", ["--version"]), ("perf", "linux-perf", ["--version"])):
        exe = shutil.which(tool)
        if not exe:
            st[tool] = f"{tool} not installed (Debian: apt-get install {pkg})"
            continue
        r = C.run([exe] + vargs, timeout=60)
        out = (r.stdout + r.stderr).strip()
        st[tool] = None if r.returncode == 0 else f"{tool} does not run: {out[:200]}"
        ver[tool] = out.splitlines()[0] if out else ""
    return st, ver


def _start_bystander(mmtrace_cli: str, out: Path, timeout: float) -> subprocess.Popen:
    """`mmtrace record -- sleep` in the background, returned once its programs are attached."""
    p = subprocess.Popen([mmtrace_cli, "record", "-q", "-o", str(out), "--", "sleep", str(int(timeout) + 60)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    # metadata.json appears once the collectors are loaded and attached.
    while not (out / "metadata.json").exists():
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("mmtrace record (bystander) did not start")
        time.sleep(0.1)
    time.sleep(0.5)
    return p


def _cold_paths() -> list[Path]:
    """Files and trees a cold `mmtrace record` reads from disk."""
    import glob
    import sysconfig

    paths = [Path(sys.prefix), Path(sysconfig.get_paths()["stdlib"]), C.REPO / "mmtrace", C.REPO / "collectors",
             Path("/usr/lib/python3/dist-packages/bcc")]
    paths += [Path(x) for pat in ("/usr/lib/*/libbcc*", "/usr/lib/*/libLLVM*", "/usr/lib/*/libclang*")
              for x in glob.glob(pat)]
    try:
        from mmtrace.capture.kernel import find_headers

        h = find_headers()
        if h:
            paths.append(Path(h))
            paths += [Path(x) for x in glob.glob("/usr/src/linux-headers-*")]
    except Exception:  # noqa: BLE001 - eviction is best effort
        pass
    return paths


def drop_page_cache(paths: list[Path]) -> int:
    """posix_fadvise(POSIX_FADV_DONTNEED) every regular file under ``paths``
    (symlinks followed once): how many files.  Only this benchmark's files,
    not the whole machine's cache (drop_caches) that other work relies on."""
    n = 0
    seen = set()
    for root in paths:
        files = [root] if root.is_file() else (x for x in root.rglob("*"))
        for f in files:
            try:
                real = f.resolve()
                if real in seen or not real.is_file():
                    continue
                seen.add(real)
                fd = os.open(real, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


def one_run(tool: str, cmd: list[str], tmp: Path, ctx: dict, args, workload: str = "") -> dict:
    rec: dict = {"tool": tool, "events": None, "lost": None, "error": None}
    env = None
    if tool == "untraced":
        argv = cmd
    elif tool in ("mmtrace", "mmtrace-all-stores", "mmtrace-raw-syscalls", "mmtrace-empty-programs", "mmtrace-cold",
                  "mmtrace-g", "mmtrace-compare", *WITHOUT_TOOLS):
        out = tmp / "mmtrace.data"
        extra = {"mmtrace-all-stores": ["--all-stores"], "mmtrace-g": ["-g"]}.get(tool, [])
        if tool == "mmtrace-raw-syscalls":
            env = dict(os.environ, MMTRACE_SYSCALL_HOOK="raw")
        elif tool == "mmtrace-empty-programs":
            env = dict(os.environ, **{EMPTY_ENV: "1"})
        elif tool in WITHOUT_TOOLS:
            env = dict(os.environ, **{EMPTY_ENV: WITHOUT_TOOLS[tool]})
        elif tool == "mmtrace-cold":  # a cache of its own, emptied after each run
            env = dict(os.environ, MMTRACE_CACHE_DIR=str(tmp / "module-cache"))
        cli = ctx["compare"] if tool == "mmtrace-compare" else ctx["mmtrace"]
        argv = [cli, "record", "-q", "-o", str(out)] + extra + ["--"] + cmd
    elif tool == "bpftrace":
        out = tmp / "bpftrace.out"
        argv = ["bpftrace", "-o", str(out), "-c", C.cmdline(cmd), str(ctx["bt_script"])]
        # the pid map never shrinks (see _common.bpftrace_script): room for every child
        env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX=str(max(4096, 4 * ctx["max_iters"])))
    elif tool == "perf":
        out = tmp / "perf.data"
        argv = ["perf", "record"] + ctx["perf_events"] + ["-o", str(out), "--"] + cmd
    before = C.wait_quiet(args.quiet_wait)
    if tool == "mmtrace-cold":
        rec["evicted_files"] = drop_page_cache(ctx.setdefault("cold_paths", _cold_paths()))
    bystander = None
    if tool == "mmtrace-bystander":
        out = tmp / "mmtrace.data"
        argv = cmd
        bystander = _start_bystander(ctx["mmtrace"], out, args.timeout)
    r = C.run(argv, timeout=args.timeout, env=env)
    if bystander is not None:
        os.killpg(bystander.pid, signal.SIGINT)
        bystander.wait(timeout=60)
    # mmtrace detaches in a background grandchild once it has exited (~1 s:
    # each tracepoint's perf event waits for an RCU grace period): wait for
    # it (re-parented to us, see become_subreaper), then give the kernel a
    # moment to free the programs, before looking for anyone else's.
    rec["detach_s"] = None
    if ctx.get("subreaper") and tool != "untraced":
        n, waited = C.reap_lingering(min(args.timeout, 120))
        rec["detach_s"] = waited if n else 0.0
    after = C.wait_quiet(2.0) if tool != "untraced" else C.other_tracers()
    rec["interference"] = sorted(set(before + after))
    rec["other_cpu"] = r.other_cpu
    rec["noisy"] = bool(rec["interference"]) or r.other_cpu > args.noise_limit
    res = C.parse_result(r.stdout)
    if tool != "untraced":
        rec["stderr_tail"] = r.stderr.strip().splitlines()[-3:]
    rec.update(wall_s=r.wall_s, tool_rss_mb=r.maxrss_mb, rc=r.returncode,
               us_per_iter=res["us_per_iter"] if res else None, argv=C.cmdline(argv),
               cpu_us_per_iter=res.get("cpu_us_per_iter") if res else None)
    if r.timed_out:
        rec["error"] = f"timed out after {args.timeout:g}s"
    elif r.returncode != 0 or (res is None and workload not in FOOTPRINT):
        rec["error"] = f"exit {r.returncode}: {(r.stderr.strip().splitlines() or ['no output'])[-1][:300]}"
    try:
        if tool.startswith("mmtrace") and (tmp / "mmtrace.data").exists():
            rec["events"], rec["lost"], _ = C.mmtrace_counts(tmp / "mmtrace.data")
        elif tool == "bpftrace" and (tmp / "bpftrace.out").exists():
            text = (tmp / "bpftrace.out").read_text(errors="replace")
            rec["events"] = len(_BT_EVENT.findall(text))
            rec["lost"] = sum(int(n) for n in _BT_LOST.findall(text + "\n" + r.stderr))
            del text
        elif tool == "perf" and (tmp / "perf.data").exists():
            rec["events"], rec["lost"], rec["lost_how"] = C.perf_counts("perf", tmp / "perf.data", args.perf_lost)
    except Exception as e:  # a damaged output is a result to report, not a crash
        rec["error"] = (rec["error"] or "") + f" reading output: {e}"
    for f in tmp.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    return rec


def main(argv=None) -> int:
    args = parse_args(argv)
    C.require_root()
    workloads = [w for w in args.workloads.split(",") if w]
    tools = [t for t in args.tools.split(",") if t]
    for x in workloads:
        if x not in WORKLOADS:
            sys.exit(f"unknown workload {x!r}: choose from {WORKLOADS}")
    for x in tools:
        if x not in TOOLS + EXTRA_TOOLS:
            sys.exit(f"unknown tool {x!r}: choose from {TOOLS + EXTRA_TOOLS}")
    mm_cli = C.find_mmtrace(args.mmtrace)
    subreaper = C.become_subreaper()
    if not subreaper:
        print("NOTE: prctl(PR_SET_CHILD_SUBREAPER) failed: mmtrace's background detach is not waited for, "
              "so its lingering programs may be counted as another tracer", file=sys.stderr)
    status, versions = tool_status(mm_cli, args.compare)
    for t in tools:
        if status[t]:
            print(f"NOTE: skipping {t}: {status[t]}", file=sys.stderr)
    active = [t for t in tools if not status[t]]

    work = C.make_tmpdir(args.tmpdir, "mmtrace-bench-")
    tmp = work / "out"
    tmp.mkdir()
    bins = C.compile_workloads(work, [w for w in workloads if w not in FOOTPRINT])
    iters = {"mmloop": args.mmloop_iters, "forkexec": args.forkexec_iters, "getppid": args.getppid_iters,
             "startup": 1, "idle": 1}
    cmds = {w: [str(bins[w]), "-n", str(iters[w])] for w in workloads if w not in FOOTPRINT}
    cmds["startup"] = ["/bin/true"]
    cmds["idle"] = ["/usr/bin/sleep", f"{args.idle_s:g}"]  # a path: bpftrace -c refuses a name found twice (usrmerge)
    tps = C.tracepoints()
    ctx = {
        "mmtrace": mm_cli,
        "subreaper": subreaper,
        "compare": args.compare,
        "perf_events": [x for cat, name in tps for x in ("-e", f"{cat}:{name}")],
        "bt_script": work / "capture.bt",
        "max_iters": iters["forkexec"] if "forkexec" in workloads else 0,  # children: bpftrace's pid map
    }
    ctx["bt_script"].write_text(C.bpftrace_script(tps))
    print(f"tracepoints ({len(tps)}): {' '.join(f'{c}:{n}' for c, n in tps)}", file=sys.stderr)

    runs: list[dict] = []
    try:
        for rnd in range(1, args.rounds + 1):
            for w in workloads:
                for t in active:
                    if (t == "mmtrace-cold" and w != "startup") or (t == "mmtrace-bystander" and w in FOOTPRINT):
                        continue  # cold: a compile per run, for start-up only; bystander: no recorder in the tree
                    rec = one_run(t, cmds[w], tmp, ctx, args, w)
                    rec.update(workload=w, round=rnd, iterations=iters[w])
                    runs.append(rec)
                    line = (f"round {rnd}/{args.rounds} {w:8} {t:8} {C.fmt(rec['us_per_iter'], '10.2f')} us/iter  "
                            f"events {C.fmt(rec['events'], ',d')}  lost {C.fmt(rec['lost'], ',d')}  "
                            f"wall {rec['wall_s']:.1f}s" + (f"  detach {rec['detach_s']:.1f}s" if rec.get("detach_s") else "") + (f"  ERROR {rec['error']}" if rec["error"] else ""))
                    if args.verbose or rec["error"]:
                        print(line, file=sys.stderr)
            if not args.verbose:
                print(f"round {rnd}/{args.rounds} done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def usable(rs):
        """Clean runs if there are at least 3 of them, else every successful run."""
        ok = [r for r in rs if not r["error"]]
        clean = [r for r in ok if not r["noisy"]]
        return (clean, True) if len(clean) >= 3 else (ok, False)

    summary = []
    for w in workloads:
        base_runs, _ = usable([r for r in runs if r["workload"] == w and r["tool"] == "untraced"])
        base = C.median([r["us_per_iter"] for r in base_runs])
        for t in tools:
            rs = [r for r in runs if r["workload"] == w and r["tool"] == t]
            if not rs and not status[t]:
                continue  # not run for this workload (mmtrace-cold)
            good = [r for r in rs if not r["error"]]
            ok, clean_only = usable(rs)  # the runs the median and min-max are taken over
            us = [r["us_per_iter"] for r in ok if r["us_per_iter"] is not None]  # none for startup, idle
            med = C.median(us)
            cpu = C.median([r.get("cpu_us_per_iter") for r in ok])
            # Paired with the floor: each run over the empty-programs run of its round.
            floor = {r["round"]: r.get("cpu_us_per_iter") for r in runs
                     if r["workload"] == w and r["tool"] == "mmtrace-empty-programs" and not r["error"]}
            paired = C.median([r["cpu_us_per_iter"] / floor[r["round"]] for r in good
                               if r.get("cpu_us_per_iter") and floor.get(r["round"])])
            losts = [r["lost"] for r in rs if r["lost"] is not None]
            evs = [r["events"] for r in rs if r["events"] is not None]
            summary.append({
                "workload": w, "tool": t, "runs": len(good), "failed": len(rs) - len(good), "used_runs": len(ok),
                "skipped": status[t],
                "iterations": iters[w],
                "median_us": med,
                "min_us": min(us, default=None),
                "max_us": max(us, default=None),
                "ratio": (med / base) if (med and base) else None,
                "median_cpu_us": cpu,
                "cpu_vs_floor": paired,
                "median_events": C.median(evs),
                "lost_total": sum(losts) if losts else None,
                "lost_max_run": max(losts) if losts else None,
                "median_wall_s": C.median([r["wall_s"] for r in ok]),
                "median_tool_rss_mb": C.median([r["tool_rss_mb"] for r in ok]),
                "errors": sorted({r["error"] for r in rs if r["error"]}),
                "runs_with_other_tracers": sum(1 for r in rs if r.get("interference")),
                "clean_runs": sum(1 for r in rs if not r["error"] and not r["noisy"]),
                "median_over_clean_runs": clean_only,
                "median_other_cpu": C.median([r["other_cpu"] for r in rs]),
            })

    print()
    print(f"Tracing overhead, {args.rounds} interleaved rounds, median per tool "
          f"(mmloop: {args.mmloop_iters:,} loops; forkexec: {args.forkexec_iters:,} iterations; "
          f"getppid: {args.getppid_iters:,} calls)")
    rows = []
    for s in summary:
        if s["skipped"]:
            rows.append([s["workload"], s["tool"], "0", "skipped", "", "", "", "", "", "", "", "", ""])
            continue
        lost = C.lost_text(s)
        rows.append([
            s["workload"], s["tool"],
            f"{s['clean_runs']}/{s['runs'] + s['failed']}" + (f" ({s['failed']} failed)" if s["failed"] else ""),
            C.fmt(s["median_us"], C.us_format(s["median_us"])) + ("" if s["median_over_clean_runs"] else "*"),
            f"{C.fmt(s['min_us'], C.us_format(s['min_us'], 2))}-{C.fmt(s['max_us'], C.us_format(s['max_us'], 2))}",
            C.fmt(s["ratio"], ".2f") + ("x" if s["ratio"] else ""),
            C.fmt(s["median_cpu_us"], C.us_format(s["median_cpu_us"])),
            C.fmt(s["cpu_vs_floor"], ".2f") + ("x" if s["cpu_vs_floor"] else ""),
            C.fmt(s["median_events"], ",.0f"), lost,
            C.fmt(s["median_wall_s"], ".1f"), C.fmt(s["median_tool_rss_mb"], ",.0f"),
            C.fmt(s["median_other_cpu"], ".2f"),
        ])
    print(C.table(["workload", "tool", "clean/runs", "median µs/iter", "min-max", "vs untraced", "CPU µs/iter",
                   "CPU vs floor", "events/run", "lost (all runs)", "wall s", "peak RSS MB", "other load"], rows,
                  "llrrrrrrrrrrr"))
    print("\nµs/iter: the workload's own CLOCK_MONOTONIC timing of its loop (tool start-up excluded; "
          "it is in wall s).\nCPU µs/iter: the workload's own CPU time per iteration (user + system, BPF programs included: they run in its context; time spent waiting for a CPU on a shared machine is not); CPU vs floor: the median over rounds of each run's CPU µs/iter over the mmtrace-empty-programs run of the same round (the hooks alone), when that tool ran.\nevents/run: mmtrace records (a syscall is one record), perf samples, "
          "bpftrace lines. peak RSS: the tool process tree (wait4).\n"
          f"clean: no other tracer and other processes below {args.noise_limit:g} cores busy (other load: "
          "median cores busy with anything else during the runs); medians and min-max over clean runs "
          "when there are at least 3, else over all runs (marked *).")
    if any(w in FOOTPRINT for w in workloads):
        print("\nFootprint (medians; start-up: the tool's wall time around /bin/true; peak RSS: the tool's "
              "process tree, idle = while `sleep`)")
        print(C.table(C.FOOTPRINT_HEADERS, C.footprint_rows(summary), "lrrrrr"))
    noisy = [r for r in runs if r["noisy"]]
    traced = [r for r in runs if r.get("interference")]
    if noisy:
        print(f"WARNING: {len(noisy)} of {len(runs)} runs were noisy: other load above {args.noise_limit:g} "
              f"cores, or ({len(traced)} runs) another tracer active before or after them (its probes slow "
              f"every process, untraced ones too)"
              + (f": {'; '.join(sorted({x for r in traced for x in r['interference']}))[:300]}" if traced else ""))
    for s in summary:
        for e in s["errors"]:
            print(f"ERROR {s['workload']} {s['tool']}: {e}")
        if s["skipped"]:
            print(f"SKIPPED {s['tool']}: {s['skipped']}")
    C.write_json(args.json, {"machine": C.machine(), "args": vars(args), "versions": versions,
                             "tracepoints": [f"{c}:{n}" for c, n in tps], "bpftrace_script": C.bpftrace_script(tps),
                             "summary": summary, "runs": runs})
    return 0 if all(not s["errors"] for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
