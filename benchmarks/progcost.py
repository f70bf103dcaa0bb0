#!/usr/bin/env python3
"""Where recording time goes: the kernel's own run-time count of each of
mmtrace's BPF programs while it traces the mmap loop.

    sudo .venv/bin/python benchmarks/progcost.py [-n LOOPS]

Loads mmtrace's collectors as `mmtrace record` does, turns on the kernel's
BPF statistics (sysctl kernel.bpf_stats_enabled, restored afterwards), runs
benchmarks/workloads/mmloop.c traced, and prints per program: runs per loop,
ns per run and ns per loop (run_time_ns / run_cnt from `bpftool prog show`).

The statistics add two clock reads to every run (an empty program measures
~70 ns here), so ns/run is an upper bound; what a run
costs the traced task on top of that (the hook itself: the syscall slow
path, the tracepoint's call into BPF) is not counted here at all.  Compare
with benchmarks/overhead.py, which times the loop itself.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def prog_stats() -> dict[int, tuple[str, int, int]]:
    """{prog id: (name, run_time_ns, run_cnt)} of every loaded BPF program."""
    r = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True)
    return {p["id"]: (p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in json.loads(r.stdout)}


def program_names(collector) -> dict[int, str]:
    """{prog id: BCC's full function name} (the kernel keeps 15 characters of a name)."""
    out = {}
    for name, fd in collector.programs.items():
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("prog_id:"):
                    out[int(line.split()[1])] = name
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--loops", type=int, default=100_000, help="mmloop iterations (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("-g", dest="stacks", action="store_true", help="with record -g's stack capture (stacks.bpf.c)")
    args = p.parse_args(argv)
    C.require_root()
    sys.path.insert(0, str(C.REPO))
    from mmtrace.capture.kernel import make_plan
    from mmtrace.capture.loader import Collector

    with tempfile.TemporaryDirectory(prefix="mmtrace-progcost-") as tmp:
        loop = C.compile_workloads(Path(tmp), names=("mmloop",))["mmloop"]
        plan = make_plan()
        was = STATS.read_text().strip()
        collector = Collector(plan, pids=[], self_tgid=os.getpid(), stacks=args.stacks)
        try:
            STATS.write_text("1")
            before = prog_stats()
            # The child waits on a pipe until it is in the traced set.
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                os.read(r, 1)
                os.execv(str(loop), [str(loop), "-n", str(args.loops)])
            os.close(r)
            collector.add_pid(pid)
            os.write(w, b"g")
            os.close(w)
            os.waitpid(pid, 0)
            after = prog_stats()
            names = program_names(collector)
        finally:
            STATS.write_text(was)
            collector.close(wait=True)
    programs = []
    for pid_, (name, t, n) in sorted(after.items()):
        if pid_ not in names:
            continue  # not ours
        t0, n0 = before.get(pid_, (name, 0, 0))[1:]
        dt, dn = t - t0, n - n0
        if dn < args.loops // 100:
            continue  # not on the loop's path (fork, exec, exit, ...)
        programs.append({"program": names[pid_], "runs_per_loop": dn / args.loops, "ns_per_run": dt / dn,
                         "ns_per_loop": dt / args.loops})
    total = sum(x["ns_per_loop"] for x in programs)
    print(f"mmtrace's BPF programs on {args.loops:,} mmap loops ({plan.syscall_hook} syscall hook"
          + (", -g" if args.stacks else "") + ")")
    print(f"{'program':40s} {'runs/loop':>9s} {'ns/run':>8s} {'ns/loop':>8s}")
    for x in programs:
        print(f"{x['program']:40s} {x['runs_per_loop']:9.2f} {x['ns_per_run']:8.1f} {x['ns_per_loop']:8.1f}")
    print(f"{'total':40s} {'':9s} {'':8s} {total:8.1f}")
    C.write_json(args.json, {"machine": C.machine(), "args": vars(args), "syscall_hook": plan.syscall_hook,
                             "programs": programs, "total_ns_per_loop": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
