#!/usr/bin/env python3
"""Lost events vs event rate: the highest sustained rate mmtrace records
with zero loss at its default settings.

Each step records benchmarks/workloads/mmloop.c (mmap 16 pages + mprotect
4 + munmap, ~10 events per loop with mmtrace's defaults) paced to a target
loop rate (mmloop --rate: busy-waits on CLOCK_MONOTONIC between loops, no
sleep syscalls), for about --seconds seconds, with

    mmtrace record -q -o TMP -- mmloop --rate R -n N

then reads the trace: events whose ts falls in mmloop's timed window (its
MMBENCH line gives the CLOCK_MONOTONIC start and length; mmtrace's ts is
the same clock) divided by the window's length = events/s, and t.lost.

Steps go up in rate; "max" is unpaced.  Finally (--max-procs, default 2)
the unpaced loop runs in that many processes at once (mmtrace record --
sh -c 'mmloop & mmloop & wait'): on a 2-core machine that leaves the
recorder no idle core, the hardest case for a user-space drain.
One traced process cannot produce events faster than the kernel runs the
loop under tracing, so if even the last steps lose nothing, the reported
figure is a lower bound: the workload, not the recorder, was the limit.

Needs root.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

KINDS_COUNTED = None  # every kind present in the trace


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: sudo .venv/bin/python benchmarks/loss.py --seconds 3")
    p.add_argument("--rates", default="5000,10000,20000,30000,40000,50000,max",
                   help="mmloop loop rates (loops/s per process) to try, in order; 'max' = unpaced "
                        "(default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each step (default: %(default)s)")
    p.add_argument("--max-procs", type=int, default=2,
                   help="after the sweep, run the unpaced loop in this many processes at once; 0: skip "
                        "(default: %(default)s)")
    p.add_argument("--max-loop-rate", type=float, default=60000,
                   help="guess of the unpaced traced loop rate, to size 'max' steps (default: %(default)s)")
    p.add_argument("--buffer-mb", type=int, help="pass --buffer-mb to mmtrace record (default: mmtrace's own default)")
    p.add_argument("--mmtrace", help="mmtrace CLI (default: next to this Python, or .venv/bin/mmtrace)")
    p.add_argument("--tmpdir", help="where traces are written (default: $TMPDIR or /tmp); removed after each step")
    p.add_argument("--quiet-wait", type=float, default=30, metavar="S",
                   help="before each step, wait up to S seconds for other tracers on the machine to finish "
                        "(default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the steps as JSON")
    return p.parse_args(argv)


def window_events(trace: Path, t0: int, t1: int) -> tuple[int, dict]:
    """Events of every kind with t0 <= ts < t1 (reads only the ts column)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n, by = 0, {}
    for d in sorted((trace / "events").iterdir()):
        k = 0
        for part in sorted(d.glob("part-*.parquet")):
            ts = pq.read_table(part, columns=["ts"]).column("ts")
            k += pc.sum(pc.and_(pc.greater_equal(ts, t0), pc.less(ts, t1)).cast("int64")).as_py() or 0
        by[d.name] = k
        n += k
    return n, by


def main(argv=None) -> int:
    args = parse_args(argv)
    C.require_root()
    mm_cli = C.find_mmtrace(args.mmtrace)
    work = C.make_tmpdir(args.tmpdir, "mmtrace-loss-")
    exe = C.compile_workloads(work, ["mmloop"])["mmloop"]
    out = work / "trace"

    steps: list[tuple[float | None, int]] = []
    for r in args.rates.split(","):
        r = r.strip()
        steps.append((None if r == "max" else float(r), 1))
    if args.max_procs > 1:
        steps.append((None, args.max_procs))

    results = []
    subreaper = C.become_subreaper()
    try:
        for rate, procs in steps:
            loops = int((rate or args.max_loop_rate) * args.seconds)
            one = [str(exe), "-n", str(loops)] + (["--rate", f"{rate:g}"] if rate else [])
            cmd = one if procs == 1 else ["/bin/sh", "-c", " & ".join([C.cmdline(one)] * procs) + " & wait"]
            argv_ = [mm_cli, "record", "-q", "-o", str(out)]
            if args.buffer_mb:
                argv_ += ["--buffer-mb", str(args.buffer_mb)]
            before = C.wait_quiet(args.quiet_wait)
            r = C.run(argv_ + ["--"] + cmd, timeout=max(120, 20 * args.seconds))
            # The recorder detaches in a background grandchild (~1 s), re-parented to
            # us: wait for exactly it, so that its programs are not taken for another tracer.
            if subreaper:
                C.reap_lingering(120)
            interference = sorted(set(before + C.wait_quiet(2.0)))
            res = C.parse_results(r.stdout)
            label = ("max" if rate is None else f"{rate:,.0f}/s") + (f" x{procs} procs" if procs > 1 else "")
            rec = {"step": label, "target_loops_per_s": rate, "procs": procs, "loops": loops, "error": None,
                   "interference": interference}
            if r.returncode or len(res) != procs or not out.exists():
                rec["error"] = f"exit {r.returncode}: {(r.stderr.strip().splitlines() or ['no output'])[-1][:300]}"
            else:
                t0 = min(x["start_ns"] for x in res)
                t1 = max(x["start_ns"] + x["elapsed_ns"] for x in res)
                total, lost, meta = C.mmtrace_counts(out)
                n, by = window_events(out, t0, t1)
                secs = (t1 - t0) / 1e9
                rec.update(
                    achieved_loops_per_s=sum(x["iters_per_s"] for x in res),
                    us_per_loop=C.median([x["us_per_iter"] for x in res]),
                    window_s=secs, window_events=n, events_per_s=n / secs if secs else None,
                    events_total=total, lost=lost, lost_by_kind={k: v for k, v in (meta.get("lost") or {}).items() if v},
                    by_kind=by, recorder_wall_s=r.wall_s, recorder_rss_mb=r.maxrss_mb, other_cpu=r.other_cpu,
                )
            results.append(rec)
            msg = (f"{label:>18}: {C.fmt(rec.get('events_per_s'), ',.0f')} ev/s, lost {C.fmt(rec.get('lost'), ',d')}"
                   + (f"  ERROR {rec['error']}" if rec["error"] else ""))
            print(msg, file=sys.stderr)
            if out.exists():
                shutil.rmtree(out)
            old = out.with_name(out.name + ".old")
            if old.exists():
                shutil.rmtree(old)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ok = [x for x in results if not x["error"]]
    zero = [x for x in ok if x["lost"] == 0]
    lossy = [x for x in ok if x["lost"]]
    first_loss = min(lossy, key=lambda x: x["events_per_s"], default=None)
    # Conservative: the best zero-loss step below the lowest rate that lost anything.
    best = max((x for x in zero if not first_loss or x["events_per_s"] < first_loss["events_per_s"]),
               key=lambda x: x["events_per_s"], default=None)

    print()
    print(f"Lost events vs rate, mmtrace record at default settings"
          f"{f' (--buffer-mb {args.buffer_mb})' if args.buffer_mb else ''}; ~{args.seconds:g} s per step")
    rows = []
    for x in results:
        if x["error"]:
            rows.append([x["step"], "-", "-", "-", "-", "-", "ERROR", "-"])
            continue
        rows.append([x["step"], f"{x['achieved_loops_per_s']:,.0f}", f"{x['us_per_loop']:.2f}",
                     f"{x['events_per_s']:,.0f}", f"{x['window_events']:,}", f"{x['lost']:,}",
                     f"{100 * x['lost'] / (x['events_total'] + x['lost']):.2g}%" if x["lost"] else "0",
                     f"{x['other_cpu']:.2f}"])
    print(C.table(["target", "loops/s achieved", "µs/loop", "events/s", "events in window", "lost", "lost %",
                   "other load"], rows, "lrrrrrrr"))
    print("other load: average cores kept busy by anything but the recording during the step (/proc/stat)")
    if best:
        limit = ("; no step lost anything: a lower bound (the workload, not the recorder, was the limit)"
                 if not lossy else f"; first loss at {first_loss['events_per_s']:,.0f} events/s ({first_loss['step']})")
        print(f"\nhighest zero-loss rate: {best['events_per_s']:,.0f} events/s ({best['step']}){limit}")
    else:
        print("\nhighest zero-loss rate: none (every step lost events or failed)")
    for x in results:
        if x["error"]:
            print(f"ERROR {x['step']}: {x['error']}")
        if x["interference"]:
            print(f"WARNING {x['step']}: another tracer was active: {'; '.join(x['interference'])[:300]}")
    C.write_json(args.json, {
        "machine": C.machine(), "args": vars(args), "steps": results,
        "highest_zero_loss_events_per_s": best["events_per_s"] if best else None,
        "highest_zero_loss_step": best["step"] if best else None,
        "first_loss_events_per_s": first_loss["events_per_s"] if first_loss else None,
        "any_loss": bool(lossy),
    })
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
