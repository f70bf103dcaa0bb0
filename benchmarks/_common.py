"""Helpers shared by the benchmark scripts (not a public API).

Everything here is plain standard library, so that ``--help`` works anywhere;
the scripts that read traces import mmtrace/pandas themselves.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKLOADS_DIR = BENCH_DIR / "workloads"
HELPERS_DIR = BENCH_DIR / "helpers"
# Set by compile_workloads(): the maxrss helper that run() wraps commands in.
MAXRSS: Path | None = None
TRACEFS = Path("/sys/kernel/tracing")

# The tracepoints mmtrace records (see README "What is recorded" and
# collectors/*.c); the other tools are asked for the same ones.
SYSCALLS = ["mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "execve"]
SCHED = ["sched_process_fork", "sched_process_exec", "sched_process_exit"]
MAPLE = ["ma_write", "ma_op"]


# ---------------------------------------------------------------- setup
def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit(f"{Path(sys.argv[0]).name}: tracing needs root: run it with sudo")


def find_mmtrace(explicit: str | None = None) -> str:
    """The mmtrace CLI: --mmtrace, else next to this Python, else the repo's venv, else PATH."""
    cands = [explicit] if explicit else []
    cands += [str(Path(sys.executable).parent / "mmtrace"), str(REPO / ".venv/bin/mmtrace"), shutil.which("mmtrace")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    sys.exit("mmtrace CLI not found: run ./setup.sh, or pass --mmtrace PATH")


def compile_workloads(outdir: Path, names=("mmloop", "forkexec")) -> dict[str, Path]:
    """cc -O2 each benchmarks/workloads/NAME.c (and helpers/maxrss.c) into
    outdir; returns {name: binary}."""
    global MAXRSS
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("no C compiler: apt-get install gcc")
    out = {}
    for name, src in [(n, WORKLOADS_DIR / f"{n}.c") for n in names] + [("maxrss", HELPERS_DIR / "maxrss.c")]:
        exe = outdir / name
        r = subprocess.run([cc, "-O2", "-Wall", str(src), "-o", str(exe)], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"compiling {src} failed:\n{r.stderr}")
        out[name] = exe
    MAXRSS = out["maxrss"]
    return out


def make_tmpdir(base: str | None, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# ---------------------------------------------------------------- running
@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    maxrss_mb: float | None  # peak RSS of the command and its descendants (helpers/maxrss.c)
    timed_out: bool = False
    cpu_s: float = 0.0  # user+system CPU of the command's process tree
    other_cpu: float = 0.0  # average cores busy with anything else meanwhile (noise)


def _cpu_busy_s() -> float:
    """Seconds of CPU time the whole machine spent busy (all CPUs), from /proc/stat."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in (f + ["0"] * 8)[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run(argv: list[str], *, timeout: float = 600, env: dict | None = None) -> Run:
    """Run argv to completion in its own process group, capturing output and
    (through the maxrss helper, when compiled) the peak RSS of its process tree."""
    rssfile = None
    if MAXRSS is not None:
        fd, rssfile = tempfile.mkstemp(prefix="maxrss-")
        os.close(fd)
        argv = [str(MAXRSS), rssfile] + list(argv)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        busy0 = _cpu_busy_s()
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
        timed_out = False
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                timed_out = True
                os.killpg(p.pid, signal.SIGTERM)
                time.sleep(2)
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        wall = time.monotonic() - t0
        busy = _cpu_busy_s() - busy0
        cpu = ru.ru_utime + ru.ru_stime
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        rss = None
        if rssfile:
            m = re.search(r"maxrss_kb=(\d+)", Path(rssfile).read_text())
            rss = int(m.group(1)) / 1024 if m else None
            os.unlink(rssfile)
            argv = argv[2:]
        # Anything else busy meanwhile: other processes, our own poll loop (~0.01 core).
        other = max(0.0, busy - cpu) / wall if wall > 0 else 0.0
        return Run(argv, p.returncode, out.read(), err.read(), wall, rss, timed_out, cpu, other)


_KV = re.compile(r"(\w+)=(\S+)")


def parse_results(text: str) -> list[dict]:
    """Every ``MMBENCH key=value ...`` line of a workload's output, as dicts (numbers converted)."""
    out = []
    for line in text.splitlines():
        if line.startswith("MMBENCH "):
            d = {}
            for k, v in _KV.findall(line):
                try:
                    d[k] = float(v) if any(c in v for c in ".e") else int(v)
                except ValueError:
                    d[k] = v
            out.append(d)
    return out


def parse_result(text: str) -> dict | None:
    """The first ``MMBENCH`` line (see parse_results), or None."""
    r = parse_results(text)
    return r[0] if r else None


def mmtrace_counts(trace: Path) -> tuple[int, int, dict]:
    """(events recorded, events lost, metadata) of a trace directory."""
    import mmtrace

    t = mmtrace.open(trace)
    ev = sum(int(v) for v in (t.metadata.get("events") or {}).values())
    return ev, sum(t.lost.values()), t.metadata


# ---------------------------------------------------------------- tracepoints
def tp_exists(cat: str, name: str) -> bool:
    return (TRACEFS / "events" / cat / name / "format").exists()


def tracepoints() -> list[tuple[str, str]]:
    """(category, name) of every tracepoint mmtrace records that this kernel has."""
    tps = [("maple_tree", n) for n in MAPLE if tp_exists("maple_tree", n)]
    mm = TRACEFS / "events" / "mmap"
    if mm.is_dir():
        tps += [("mmap", p.name) for p in sorted(mm.iterdir()) if (p / "format").exists()]
    for sc in SYSCALLS:
        for side in ("enter", "exit"):
            if tp_exists("syscalls", f"sys_{side}_{sc}"):
                tps.append(("syscalls", f"sys_{side}_{sc}"))
    tps += [("sched", n) for n in SCHED if tp_exists("sched", n)]
    return tps


_FIELD = re.compile(r"field:(.+?)\s+(\w+)(\[\d*\])?;\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);")


def tp_fields(cat: str, name: str) -> list[tuple[str, str, int, bool]]:
    """Non-common fields of a tracepoint: (type, name, size, signed)."""
    out = []
    for m in _FIELD.finditer((TRACEFS / "events" / cat / name / "format").read_text()):
        typ, fname, arr, _off, size, signed = m.groups()
        if fname.startswith("common_"):
            continue
        out.append((typ + (arr or ""), fname, int(size), signed == "1"))
    return out


def bpftrace_script(tps: list[tuple[str, str]]) -> str:
    """A bpftrace program printing every field of every tracepoint in ``tps``,
    one line per event, for the process tree of ``-c CMD`` (pid == cpid and
    its descendants, followed through sched_process_fork)."""
    lines = [
        "// generated by benchmarks/overhead.py: every field of each tracepoint, pid tree of -c CMD",
        "BEGIN { @t[cpid] = 1; }",
    ]
    for cat, name in tps:
        fmt, args = ["%llu %d %d %d", name], ["nsecs", "cpu", "pid", "tid"]
        for typ, f, size, signed in tp_fields(cat, name):
            if typ.startswith("__data_loc") or "[" in typ and "char" in typ:
                fmt.append(f"{f}=%s")
                args.append(f"str(args->{f})" if typ.startswith("__data_loc") else f"args->{f}")
            elif "char *" in typ and cat != "syscalls":
                fmt.append(f"{f}=%s")  # kernel string (maple_tree fn): read it now
                args.append(f"str(args->{f})")
            elif "*" in typ or (size == 8 and not signed):
                fmt.append(f"{f}=%lx")
                args.append(f"args->{f}")
            elif size == 8:
                fmt.append(f"{f}=%ld")
                args.append(f"args->{f}")
            else:
                fmt.append(f"{f}=%d")
                args.append(f"args->{f}")
        body = f'printf("{" ".join(fmt)}\\n", {", ".join(args)});'
        if name == "sched_process_fork":
            body = "@t[args->child_pid] = 1; " + body
        # No delete(@t[pid]) at sched_process_exit: on recent kernels that
        # tracepoint fires before exit_mm(), so the exit's mmap:exit_mmap
        # would be missed.  The map is sized with BPFTRACE_MAP_KEYS_MAX.
        lines.append(f"tracepoint:{cat}:{name} /@t[pid]/ {{ {body} }}")
    lines.append("END { clear(@t); }")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- perf
_PERF_SECTION = re.compile(r"^(\S.*) stats:\s*$")
_PERF_COUNT = re.compile(r"^\s*(\w+) events:\s+(\d+)")
_PERF_LOST_REC = re.compile(r"PERF_RECORD_LOST: .*lost:\s*(\d+)")


def perf_counts(perf: str, data: Path, method: str = "stats") -> tuple[int, int, str]:
    """(samples, lost samples, how) of a perf.data file.

    ``stats``: ``perf report --stats`` (fast); per event its ``LOST_SAMPLES
    events`` line is the number of samples lost (verified equal to the sum
    of PERF_RECORD_LOST ``lost:`` fields).  ``dump``: sum ``lost:`` over
    ``perf report -D`` PERF_RECORD_LOST records (decodes everything: slow).
    """
    r = subprocess.run([perf, "report", "-i", str(data), "--stats"], capture_output=True, text=True)
    section, samples, lost, agg_lost_records = None, 0, 0, 0
    for line in (r.stdout + "\n" + r.stderr).splitlines():
        if line.strip().startswith("Aggregated stats"):
            section = "aggregated"
            continue
        m = _PERF_SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        m = _PERF_COUNT.match(line)
        if not m or section is None:
            continue
        kind, n = m.group(1), int(m.group(2))
        if section == "aggregated":
            if kind == "LOST":
                agg_lost_records = n
        elif kind == "SAMPLE":
            samples += n
        elif kind == "LOST_SAMPLES":
            lost += n
    how = "perf report --stats"
    if method == "dump" or (agg_lost_records and not lost):
        d = subprocess.run([perf, "report", "-D", "-i", str(data)], capture_output=True, text=True)
        lost = sum(int(m.group(1)) for m in _PERF_LOST_REC.finditer(d.stdout))
        how = "perf report -D (PERF_RECORD_LOST)"
    return samples, lost, how


# ---------------------------------------------------------------- interference
_TRACING_PROG_TYPES = {"tracepoint", "raw_tracepoint", "raw_tracepoint_writable", "tracing", "kprobe", "perf_event"}


def other_tracers() -> list[str]:
    """What else is tracing right now (called between our own runs, so none of it is ours):
    loaded BPF tracing programs (bpftool) and running perf/bpftrace/mmtrace processes.
    Their probes run on every hit of the tracepoints, traced process or not, so
    they slow the untraced baseline too."""
    found = []
    bpftool = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if bpftool:
        try:
            r = subprocess.run([bpftool, "prog", "show", "-j"], capture_output=True, text=True, timeout=10)
            progs = json.loads(r.stdout or "[]")
            progs = [p for p in progs if p.get("type") in _TRACING_PROG_TYPES]
            if progs:
                owners = sorted({f"{o.get('comm')}[{o.get('pid')}]" for p in progs for o in p.get("pids", [])})
                found.append(f"{len(progs)} BPF tracing programs loaded" + (f" by {', '.join(owners)}" if owners else ""))
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            comm = (d / "comm").read_text().strip()
            args = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if comm in ("perf", "bpftrace") or ("mmtrace" in args and " record" in args):
            found.append(f"pid {d.name}: {args[:80]}")
    return found


def wait_quiet(max_s: float) -> list[str]:
    """Wait up to max_s seconds for other tracers (see other_tracers) to go away;
    returns what is still there (empty: quiet)."""
    deadline = time.monotonic() + max_s
    while True:
        busy = other_tracers()
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.5)


# ---------------------------------------------------------------- output
def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def us_format(us: float | None, digits: int = 2) -> str:
    """Format spec for a µs figure: ``digits`` decimals, three below 1 µs (a syscall)."""
    return ",.3f" if us is not None and us < 1 else f",.{digits}f"


ANALYSIS_HEADERS = ["measurement", "events", "seconds", "events/s", "peak RSS MB", "other load"]


def analysis_rows(rec: dict, results: dict, code=lambda text: text) -> list[list[str]]:
    """Rows under ANALYSIS_HEADERS of analysis.py's figures: the recording
    ``rec``, then each measurement of ``results``.  ``code`` marks up code in
    the labels (Markdown backticks for RESULTS.md; as is on the console)."""
    rows = []
    for key, label, n, secs in (
        ("events_per_s_record", "recorder: events / recording time (attach to stop)", "events", "record_s"),
        ("events_per_s_window", "recorder: events during mmloop's timed window", "window_events", "window_s"),
    ):
        if rec.get(key):
            rows.append([label, f"{rec[n]:,}", f"{rec[secs]:.2f}", f"{rec[key]:,.0f}",
                         fmt(rec.get("recorder_rss_mb"), ",.0f"), fmt(rec.get("other_cpu"), ".2f")])
    labels = {"import": f"{code('import mmtrace')} (baseline)",
              "tree_write": code("mmtrace.open") + " + " + code('t.events("tree_write")'),
              "all kinds": f"{code('mmtrace.open')} + {code('t.events(k)')} for every kind", "replay": "replay",
              "processes": f"{code('t.processes()')} (tables already loaded)"}
    for which, label in labels.items():
        r = results.get(which) or {}
        if which == "replay" and r.get("function"):
            fn = r["function"]
            label = "replay: " + code(f"{fn}(t, pid, exit - 1)" if fn.endswith("vmas") else fn)
        if r.get("error"):
            rows.append([label, "-", "-", "-", f"ERROR {r['error']}", "-"])
        elif r.get("available") is False:
            rows.append(["replay: not available yet", "-", "-", "-", "-", "-"])
        else:
            rows.append([label, fmt(r.get("rows"), ",d"), fmt(r.get("seconds"), ".3f"),
                         fmt(r.get("events_per_s"), ",.0f"), fmt(r.get("vmhwm_mb"), ",.0f"), fmt(r.get("other_cpu"), ".2f")])
    return rows


FOOTPRINT_HEADERS = ["tool", "start-up s (-c true)", "peak RSS MB idle", "peak RSS MB mmloop", "mmloop vs untraced",
                     "mmloop lost"]


def footprint_rows(summary: list[dict]) -> list[list[str]]:
    """One row per tool of overhead.py's summary: start-up wall time (the
    startup workload), peak RSS idle and on the mmap loop, the loop's ratio
    and lost events, beside each other."""
    by = {(s["workload"], s["tool"]): s for s in summary if not s["skipped"]}
    rows = []
    for tool in dict.fromkeys(s["tool"] for s in summary):
        if tool in ("untraced", "mmtrace-bystander") or not any(t == tool for _, t in by):  # bystander: no recorder in its tree
            continue
        st, idle, loop = by.get(("startup", tool), {}), by.get(("idle", tool), {}), by.get(("mmloop", tool), {})
        rows.append([tool, fmt(st.get("median_wall_s"), ".2f"), fmt(idle.get("median_tool_rss_mb"), ",.0f"),
                     fmt(loop.get("median_tool_rss_mb"), ",.0f"),
                     fmt(loop.get("ratio"), ".2f") + ("x" if loop.get("ratio") else ""),
                     lost_text(loop) if loop else "-"])
    return rows


def lost_text(s: dict) -> str:
    """Lost events of one overhead summary row, with their share of all events ("-" if unknown)."""
    if s["lost_total"] is None:
        return "-"
    text = f"{s['lost_total']:,}"
    if s["lost_total"] and s["median_events"]:
        text += f" ({100 * s['lost_total'] / (s['lost_total'] + s['median_events'] * s['runs']):.2g}%)"
    return text


def fmt(x, spec=",.1f", none="-"):
    return none if x is None else format(x, spec)


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain-text table (also valid as a GitHub markdown table)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


def write_json(path: str | None, obj: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(obj, indent=2, default=str) + "\n")


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    # The figures' own files do not make the code dirty (run_all.sh rewrites them as it goes).
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!benchmarks/results", ":!benchmarks/RESULTS.md", ":!README.md"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit + ("+dirty" if dirty else ""),
        "python": platform.python_version(),
    }


def peak_rss_self_mb() -> float:
    """VmHWM of this process (MiB), falling back to getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cmdline(argv) -> str:
    return shlex.join(str(a) for a in argv)


_PR_SET_CHILD_SUBREAPER = 36  # include/uapi/linux/prctl.h


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (prctl
    PR_SET_CHILD_SUBREAPER, v3.4).  mmtrace record detaches its programs in a
    detached grandchild after it exits (capture/loader.py Loaded.close); that
    grandchild is then re-parented here, so reap_lingering() can wait for
    exactly it instead of taking our own lingering programs for another
    tracer."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_lingering(max_s: float) -> tuple[int, float]:
    """Wait up to max_s seconds for every descendant that outlived a run (the
    recorder's background detach) to exit: (how many were reaped, seconds
    waited).  Only called between runs, when no child of ours is running."""
    t0 = time.monotonic()
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # none left
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            break
        if pid:
            n += 1
            continue
        if time.monotonic() - t0 > max_s:
            break
        time.sleep(0.01)
    return n, time.monotonic() - t0
