#!/usr/bin/env python3
"""Render benchmarks/RESULTS.md from the JSON files written by overhead.py,
loss.py and analysis.py (--json; run_all.sh keeps them in benchmarks/results/,
the default here).  run_all.sh calls it; a missing or failed part is shown as
such.  Prints the markdown too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def load(p: Path | None):
    if p and p.exists():
        try:
            return json.loads(p.read_text())
        except ValueError:
            return None
    return None


def overhead_md(d) -> list[str]:
    if not d:
        return ["_overhead.py did not produce results._", ""]
    a = d["args"]
    out = [
        f"{a['rounds']} interleaved rounds per tool (untraced, mmtrace, bpftrace, perf, untraced, ...); "
        f"mmloop = {a['mmloop_iters']:,} loops of mmap 16 pages + mprotect 4 + munmap; "
        f"forkexec = {a['forkexec_iters']:,} fork + execve(/bin/true) + waitpid"
        + (f"; getppid = {a['getppid_iters']:,} getppid() calls, a syscall mmtrace does not follow. "
           if "getppid_iters" in a else ". ") +
        "µs/iter is the workload's own CLOCK_MONOTONIC timing (tool start-up excluded); "
        "the table shows the median over rounds.",
        "",
    ]
    foot = C.footprint_rows(d["summary"])
    if any(r[1] != "-" for r in foot):
        out += [
            "**Footprint.** Start-up: median wall time of the tool around `/bin/true` (`mmtrace record -c true`, "
            "`perf record -e ... -- true`, `bpftrace -c true`), compile/attach/detach included; "
            "`mmtrace-cold` is mmtrace with an empty module cache (BCC compiles). Peak RSS: the tool's process "
            "tree (wait4), idle (`sleep " + f"{a.get('idle_s', 3):g}" + "`) and on the mmap loop at full speed.",
            "",
            C.table(C.FOOTPRINT_HEADERS, foot, "lrrrrr"),
            "",
        ]
    rows = []
    for s in d["summary"]:
        if s["workload"] in ("startup", "idle"):
            continue  # in the footprint table
        if s["skipped"]:
            rows.append([s["workload"], s["tool"], "skipped", "", "", "", "", "", "", "", s["skipped"]])
            continue
        lost = C.lost_text(s)
        rows.append([
            s["workload"], s["tool"],
            C.fmt(s["median_us"], C.us_format(s["median_us"])) + ("" if s.get("median_over_clean_runs", True) else "*"),
            f"{C.fmt(s['min_us'], C.us_format(s['min_us'], 1))}-{C.fmt(s['max_us'], C.us_format(s['max_us'], 1))}",
            C.fmt(s["ratio"], ".2f") + ("x" if s["ratio"] else ""),
            C.fmt(s["median_events"], ",.0f"), lost,
            C.fmt(s["median_tool_rss_mb"], ",.0f"),
            f"{s.get('clean_runs', s['runs'])}/{s['runs'] + s['failed']}", C.fmt(s.get("median_other_cpu"), ".2f"),
            f"{s['failed']} failed: {'; '.join(s['errors'])}" if s["failed"] else "",
        ])
    out.append(C.table(["workload", "tool", "median µs/iter", "min-max", "vs untraced", "events/run",
                        "lost (all runs)", "tool peak RSS MB", "clean runs", "other load", "notes"], rows,
                       "llrrrrrrrrl"))
    out += ["", f"Clean run: no other tracer active and other processes below {a.get('noise_limit', 0.25):g} "
            "cores busy on average (other load: median cores busy with anything but the run itself, from "
            "/proc/stat). Medians and min-max are over clean runs when there are at least 3, else over all "
            "runs (marked *)."]
    noisy = sum(s.get("runs_with_other_tracers") or 0 for s in d["summary"])
    if noisy:
        out += ["", f"**Warning:** {noisy} runs had another tracer active on the machine."]
    out += [
        "",
        "Events/run: mmtrace records (one per syscall, enter+exit merged; inner `mas_wr_*` events identical "
        "to their outer store folded in the kernel by default), perf samples, bpftrace output lines. "
        "bpftrace prints every field of every tracepoint with printf to a file (`-o`), for the pid tree of "
        "`-c CMD`; perf records the same tracepoints with default buffer sizes. Lost: mmtrace `t.lost` "
        "(kernel counters stored in the trace), perf `LOST_SAMPLES` of `perf report --stats`, bpftrace "
        "`Lost N events` lines (bpftrace 0.17 writes them to the `-o` file, not stderr; both are read).",
        "",
        "Tracepoints: " + ", ".join(f"`{t}`" for t in d.get("tracepoints", [])) + ".",
        "",
    ]
    tools = {s["tool"] for s in d["summary"]}
    if "mmtrace-bystander" in tools:
        out += ["`mmtrace-bystander`: the untraced workload while `mmtrace record -- sleep` traces another "
                "process: the cost of recording to the rest of the host, whose syscalls and maple tree writes "
                "run mmtrace's in-kernel filter.", ""]
    if "mmtrace-empty-programs" in tools:
        out += ["`mmtrace-empty-programs`: mmtrace with every hook attached and every program returning at "
                "once (`MMTRACE_EMPTY_PROGRAMS=1`, records nothing): the floor any recorder of these events "
                "pays on this host.", ""]
    without = sorted(t for t in tools if t.startswith("mmtrace-without-"))
    if without:
        out += [", ".join(f"`{t}`" for t in without) + ": mmtrace with the BPF programs of that group returning "
                "at once (`MMTRACE_EMPTY_PROGRAMS=GROUP`, collectors/compat.h `MMT_EMPTY_GROUP_<group>`), the "
                "others recording: mmtrace's CPU µs/iter less this one's is what the group costs.", ""]
    if "mmtrace-raw-syscalls" in tools:
        out += ["`mmtrace-raw-syscalls`: mmtrace with `MMTRACE_SYSCALL_HOOK=raw`, syscalls from "
                "`raw_syscalls:sys_enter`/`sys_exit` kept by number in the kernel instead of the per-syscall "
                "tracepoints.", ""]
    return out


def loss_md(d) -> list[str]:
    if not d:
        return ["_loss.py did not produce results._", ""]
    out = [
        f"mmtrace record at default settings; mmloop paced to a target loop rate (busy-wait), "
        f"~{d['args']['seconds']:g} s per step; events/s = events whose ts is inside mmloop's timed window "
        "/ window length.",
        "",
    ]
    rows = []
    for x in d["steps"]:
        if x.get("error"):
            rows.append([x["step"], "-", "-", "-", f"ERROR {x['error']}", "-"])
            continue
        rows.append([x["step"], f"{x['achieved_loops_per_s']:,.0f}", f"{x['events_per_s']:,.0f}",
                     f"{x['window_events']:,}", f"{x['lost']:,}", C.fmt(x.get("other_cpu"), ".2f")])
    out.append(C.table(["target loop rate", "loops/s achieved", "events/s", "events", "lost", "other load"], rows))
    out.append("")
    noisy = [x["step"] for x in d["steps"] if x.get("interference")]
    if noisy:
        out += [f"**Warning:** another tracer was active during: {', '.join(noisy)}.", ""]
    best = d.get("highest_zero_loss_events_per_s")
    if best is None:
        out.append("**Highest zero-loss rate: none measured.**")
    elif d.get("any_loss"):
        out.append(f"**Highest zero-loss rate: {best:,.0f} events/s** ({d['highest_zero_loss_step']}); "
                   f"first loss at {d['first_loss_events_per_s']:,.0f} events/s.")
    else:
        out.append(f"**Highest zero-loss rate: ≥ {best:,.0f} events/s** ({d['highest_zero_loss_step']}): no step "
                   "lost anything, so this is the most this machine's workload produced, a lower bound.")
    out.append("")
    return out


def analysis_md(d) -> list[str]:
    if not d:
        return ["_analysis.py did not produce results._", ""]
    rec, an = d["recording"], d["analysis"]
    out = [f"Trace: {rec['events']:,} events, {rec['lost']:,} lost"
           + (f", {rec['trace_mb']:.1f} MiB on disk ({rec['bytes_per_event']:.1f} bytes/event)" if rec.get("trace_mb") else "")
           + ". Each analysis measurement runs in its own subprocess (median time of "
           f"{d['args']['repeat']} runs after {d['args'].get('warmup', 0)} untimed, replay and processes "
           f"{d['args']['replay_repeat']}; import excluded; "
           "peak RSS = VmHWM of that subprocess; events/s = rows in the trace / seconds).", ""]
    out.append(C.table(C.ANALYSIS_HEADERS, C.analysis_rows(rec, an, code=lambda text: f"`{text}`")))
    out.append("")
    return out


def progcost_md(d) -> list[str]:
    if not d:
        return ["_progcost.py did not produce results._", ""]
    out = [f"Each of mmtrace's BPF programs on {d['args']['loops']:,} mmap loops ({d['syscall_hook']} syscall "
           "hook), from the kernel's own statistics (`kernel.bpf_stats_enabled`), which add two clock reads to "
           "each run: ns/run is an upper bound, and the hooks' own cost (the syscall slow path, the call into BPF) "
           "is not in it.", ""]
    rows = [[f"`{x['program']}`", f"{x['runs_per_loop']:.2f}", f"{x['ns_per_run']:.0f}", f"{x['ns_per_loop']:.0f}"]
            for x in d["programs"]]
    rows.append(["total", "", "", f"{d['total_ns_per_loop']:.0f}"])
    out += [C.table(["program", "runs/loop", "ns/run", "ns/loop"], rows, "lrrr"), ""]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    raw = Path(__file__).resolve().parent / "results"
    p.add_argument("--overhead", type=Path, default=raw / "overhead.json", help="default: %(default)s")
    p.add_argument("--loss", type=Path, default=raw / "loss.json", help="default: %(default)s")
    p.add_argument("--analysis", type=Path, default=raw / "analysis.json", help="default: %(default)s")
    p.add_argument("--progcost", type=Path, default=raw / "progcost.json", help="default: %(default)s")
    p.add_argument("--command", default="sudo benchmarks/run_all.sh", help="the command line to show")
    p.add_argument("-o", "--output", type=Path, default=Path(__file__).resolve().parent / "RESULTS.md")
    p.add_argument("--readme", type=Path, default=None,
                   help="also put the figures in this README, between the markers "
                        "<!-- benchmarks:begin --> and <!-- benchmarks:end -->")
    a = p.parse_args(argv)
    ov, lo, an, pc = load(a.overhead), load(a.loss), load(a.analysis), load(a.progcost)
    m = next((x["machine"] for x in (ov, lo, an) if x), None) or C.machine()
    vers = (ov or {}).get("versions", {})
    lines = [
        "# mmtrace performance",
        "",
        f"Generated by `{a.command}` (see `benchmarks/README.md`). One machine, one run: "
        "compare ratios measured side by side, not absolute numbers across machines.",
        "",
        C.table(["", ""], [
            ["kernel", m["kernel"]], ["CPU", f"{m['cpu']} ({m['cores']} cores)"], ["date", m["date"]],
            ["mmtrace commit", f"`{m['commit']}`"],
            ["tools", ", ".join(f"{v}" for k, v in vers.items() if v) or "-"],
        ], "ll"),
        "",
        "## Tracing overhead (`benchmarks/overhead.py`)",
        "",
        *overhead_md(ov),
        "## Where recording time goes (`benchmarks/progcost.py`)",
        "",
        *progcost_md(pc),
        "## Lost events vs rate (`benchmarks/loss.py`)",
        "",
        *loss_md(lo),
        "## Analysis throughput (`benchmarks/analysis.py`)",
        "",
        *analysis_md(an),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    a.output.write_text(text)
    if a.readme is not None:
        splice_readme(a.readme, text)
    print(text)
    return 0


BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def splice_readme(readme: Path, results: str) -> None:
    """Replace the README's figures (between the markers) with ``results``, headings demoted."""
    doc = readme.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} markers")
    body = "\n".join(("#" + ln) if ln.startswith("#") else ln for ln in results.splitlines()[1:])
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{body.strip()}\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
