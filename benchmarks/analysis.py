#!/usr/bin/env python3
"""Analysis-side throughput: loading a big trace into pandas, the recorder's
drain rate, and (when mmtrace.model offers it) the VMA-tree replay.

Without --trace, first records benchmarks/workloads/mmloop.c (mmap 16 pages
+ mprotect 4 + munmap; ~10 events per loop with mmtrace's defaults) with

    mmtrace record -q -o TMP -- mmloop -n LOOPS

so that the trace holds at least --min-events events (default 1 M).

Recorder drain rate: events recorded / recording time (metadata start_ns ..
stop_ns, i.e. from attach to stop: a lower bound, it includes the idle
start and end), and events in mmloop's timed window / window length (the
rate the recorder kept up with; lost must be 0 for it to mean anything).

Each analysis measurement then runs in its own Python subprocess (so that
peak RSS figures do not mix), --repeat times; the median time and the
largest peak RSS (VmHWM of /proc/self/status) are reported:

  import        import mmtrace (pandas, pyarrow): the baseline RSS
  tree_write    mmtrace.open(PATH) + t.events("tree_write")
  all kinds     mmtrace.open(PATH) + t.events(k) for every kind
  replay        only if mmtrace.model has a public replay: vmas(trace, pid,
                at) for the workload's pid just before it exited (replays
                the whole trace); otherwise "replay: not available yet"
  processes     t.processes() (it may replay too: splits/merges per process)

Times exclude the import (measured once per subprocess before the clock
starts); events/s = rows / seconds.  Needs root only to record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MEASURES = ["import", "tree_write", "all kinds", "replay", "processes"]
SLOW = {"replay", "processes"}  # run --replay-repeat times


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  sudo .venv/bin/python benchmarks/analysis.py\n"
                                       "  .venv/bin/python benchmarks/analysis.py --trace mmtrace.data")
    p.add_argument("--trace", type=Path, help="analyse this trace instead of recording one (no root needed)")
    p.add_argument("--loops", type=int, default=150_000,
                   help="mmloop iterations to record (default: %(default)s, about 1.5 M events)")
    p.add_argument("--min-events", type=int, default=1_000_000,
                   help="warn if the trace has fewer events (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=5, help="subprocess runs per measurement (default: %(default)s)")
    p.add_argument("--replay-repeat", type=int, default=1, help="runs of the replay measurement (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed runs before the --repeat ones of each fast measurement (default: %(default)s): "
                        "on a VM, memory a big process just freed (the recording) may have gone back to the "
                        "host, and the first process to touch it again pays for that")
    p.add_argument("--timeout", type=float, default=300, help="seconds before one measurement is killed (default: %(default)s)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep the recorded trace at DIR")
    p.add_argument("--mmtrace", help="mmtrace CLI (default: next to this Python, or .venv/bin/mmtrace)")
    p.add_argument("--tmpdir", help="where the trace is recorded (default: $TMPDIR or /tmp)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--_measure", choices=MEASURES, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------- subprocess side
def find_replay():
    """(label, callable(trace) -> (rows, extra)) for a public replay in mmtrace.model, or (why not, None)."""
    import importlib

    try:
        model = importlib.import_module("mmtrace.model")
    except Exception as e:
        return f"mmtrace.model does not import: {e}", None
    cands = [(f"mmtrace.model.{n}", getattr(model, n)) for n in ("vmas", "replay", "model_of")
             if callable(getattr(model, n, None))]
    if not cands:
        # Being written: a public submodule not yet re-exported by the package.
        for sub in ("model", "replay"):
            try:
                m = importlib.import_module(f"mmtrace.model.{sub}")
            except Exception:
                continue
            cands += [(f"mmtrace.model.{sub}.{n}", getattr(m, n)) for n in ("vmas", "replay", "model_of")
                      if n in getattr(m, "__all__", ()) and callable(getattr(m, n, None))]
    if not cands:
        return "no public replay/vmas function in mmtrace.model", None
    label, fn = cands[0]

    def run(trace, pid, at):
        if label.endswith(".vmas"):
            df = fn(trace, pid, at)
            return {"result_rows": len(df), "pid": pid, "at": at}
        r = fn(trace)
        if hasattr(r, "build"):
            r.build()
        return {"result": type(r).__name__}

    return label, run


def query_point(trace) -> tuple[int, int]:
    """(pid, ts): the last traced process to exit (the workload), just before its exit.

    From the raw proc events, not t.processes(), which may itself replay."""
    proc = trace.raw_events("proc")
    ex = proc[(proc["what"].astype(str) == "exit") & (proc["pid"] == proc["tgid"])] if len(proc) else proc
    if len(ex):
        row = ex.iloc[-1]
        return int(row["tgid"]), int(row["ts"]) - 1
    att = trace.table("procfs/attach")
    pid = int(att["pid"].iloc[0]) if len(att) else int(proc["tgid"].iloc[0])
    return pid, int(trace.metadata["stop_ns"])


def measure(which: str, path: Path) -> dict:
    t_imp = time.perf_counter()
    import mmtrace

    out = {"measure": which, "import_s": time.perf_counter() - t_imp}
    if which == "import":
        out.update(seconds=out["import_s"], rows=None)
    elif which == "tree_write":
        t0 = time.perf_counter()
        t = mmtrace.open(path)
        df = t.events("tree_write")
        out.update(seconds=time.perf_counter() - t0, rows=len(df), frame_mb=df.memory_usage(deep=True).sum() / 2**20)
    elif which == "all kinds":
        t0 = time.perf_counter()
        t = mmtrace.open(path)
        rows, mb = 0, 0.0
        for k in t.kinds:
            df = t.events(k)
            rows += len(df)
            mb += df.memory_usage(deep=True).sum() / 2**20
        out.update(seconds=time.perf_counter() - t0, rows=rows, frame_mb=mb, kinds=t.kinds)
    elif which == "processes":
        t = mmtrace.open(path)
        n_loaded = sum(len(t.raw_events(k)) for k in t.kinds)
        t0 = time.perf_counter()
        df = t.processes()
        out.update(seconds=time.perf_counter() - t0, rows=n_loaded, result_rows=len(df))
    elif which == "replay":
        label, run = find_replay()
        out["function"] = label
        if run is None:
            out.update(available=False)
        else:
            t = mmtrace.open(path)
            # the replay's own cost, not Parquet reading, is timed below
            n_loaded = sum(len(t.raw_events(k)) for k in t.kinds)
            pid, at = query_point(t)
            t0 = time.perf_counter()
            extra = run(t, pid, at)
            out.update(available=True, seconds=time.perf_counter() - t0, rows=n_loaded, **extra)
            try:  # how many records the replay walked, if the model says
                from mmtrace.model.model import model_of

                out["replayed_records"] = len(model_of(t).stream.records)
            except Exception:
                pass
    out["vmhwm_mb"] = C.peak_rss_self_mb()
    return out


# ------------------------------------------------------------- driver side
def run_measure(which: str, path: Path, timeout: float) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--_measure", which, "--trace", str(path)]
    r = C.run(argv, timeout=timeout)
    if r.timed_out:
        return {"measure": which, "error": f"timed out after {timeout:g}s"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line), other_cpu=r.other_cpu)
    return {"measure": which, "error": f"exit {r.returncode}: {(r.stderr.strip().splitlines() or ['no output'])[-1][:300]}"}


def record(args, work: Path) -> tuple[Path, dict]:
    C.require_root()
    mm_cli = C.find_mmtrace(args.mmtrace)
    exe = C.compile_workloads(work, ["mmloop"])["mmloop"]
    out = args.keep or (work / "trace")
    print(f"recording {args.loops:,} mmloop loops into {out} ...", file=sys.stderr)
    r = C.run([mm_cli, "record", "-q", "-o", str(out), "--", str(exe), "-n", str(args.loops)], timeout=args.timeout)
    res = C.parse_result(r.stdout)
    if r.returncode or not res:
        sys.exit(f"recording failed (exit {r.returncode}):\n{r.stderr}")
    total, lost, meta = C.mmtrace_counts(out)
    from loss import window_events  # same directory

    t0, t1 = res["start_ns"], res["start_ns"] + res["elapsed_ns"]
    n_win, _ = window_events(out, t0, t1)
    dur = (meta["stop_ns"] - meta["start_ns"]) / 1e9
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    rec = {
        "loops": args.loops, "events": total, "lost": lost, "events_by_kind": meta.get("events"),
        "record_s": dur, "events_per_s_record": total / dur if dur else None,
        "window_s": (t1 - t0) / 1e9, "window_events": n_win, "events_per_s_window": n_win / ((t1 - t0) / 1e9),
        "us_per_loop": res["us_per_iter"], "recorder_wall_s": r.wall_s, "recorder_rss_mb": r.maxrss_mb,
        "other_cpu": r.other_cpu,
        "trace_mb": size / 2**20, "bytes_per_event": size / total if total else None,
    }
    return out, rec


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._measure:
        print(json.dumps(measure(args._measure, args.trace)))
        return 0
    work = C.make_tmpdir(args.tmpdir, "mmtrace-analysis-")
    try:
        if args.trace:
            path, rec = args.trace, None
            meta = json.loads((path / "metadata.json").read_text())
            total = sum((meta.get("events") or {}).values())
            rec = {"events": total, "lost": sum((meta.get("lost") or {}).values()), "events_by_kind": meta.get("events"),
                   "record_s": (meta["stop_ns"] - meta["start_ns"]) / 1e9 if meta.get("stop_ns") else None}
            if rec["record_s"]:
                rec["events_per_s_record"] = total / rec["record_s"]
        else:
            path, rec = record(args, work)
        if rec["events"] < args.min_events:
            print(f"WARNING: the trace has {rec['events']:,} events, fewer than --min-events {args.min_events:,}",
                  file=sys.stderr)

        results = {}
        for which in MEASURES:
            n = args.replay_repeat if which in SLOW else args.repeat
            warm = [] if which in SLOW else [run_measure(which, path, args.timeout) for _ in range(args.warmup)]
            runs = []
            for _ in range(n):
                m = run_measure(which, path, args.timeout)
                runs.append(m)
                if m.get("error") or m.get("available") is False:
                    break
            ok = [m for m in runs if not m.get("error")]
            res = {"runs": runs, "warmup_runs": warm}
            if ok:
                res.update(
                    seconds=C.median([m.get("seconds") for m in ok]),
                    rows=ok[0].get("rows"),
                    vmhwm_mb=max(m["vmhwm_mb"] for m in ok),
                    available=ok[0].get("available", True),
                    function=ok[0].get("function"),
                    frame_mb=ok[0].get("frame_mb"),
                    other_cpu=C.median([m.get("other_cpu") for m in ok]),
                )
                if res["rows"] and res["seconds"]:
                    res["events_per_s"] = res["rows"] / res["seconds"]
            else:
                res["error"] = runs[-1]["error"]
            results[which] = res
            print(f"{which}: done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"Analysis throughput on {path if args.trace else 'a fresh recording'}: "
          f"{rec['events']:,} events ({', '.join(f'{k} {v:,}' for k, v in (rec['events_by_kind'] or {}).items())}), "
          f"lost {rec['lost']:,}")
    print(C.table(C.ANALYSIS_HEADERS, C.analysis_rows(rec, results)))
    print(f"\nseconds: median of {args.repeat} subprocess runs after {args.warmup} untimed "
          f"(replay, processes: {args.replay_repeat}, none untimed), import excluded; "
          "peak RSS: VmHWM of that subprocess (the recorder's: wait4 of mmtrace record).")
    if rec.get("trace_mb"):
        print(f"trace on disk: {rec['trace_mb']:.1f} MiB, {rec['bytes_per_event']:.1f} bytes/event; "
              f"mmloop under mmtrace: {rec['us_per_loop']:.2f} µs/loop")
    if results["replay"].get("available") is False:
        print(f"replay: not available yet ({results['replay']['runs'][0].get('function')})")
    elif results["replay"].get("function"):
        rr = results["replay"]["runs"][0]
        print(f"replay: timed {results['replay']['function']}; events = rows of every kind in the trace"
              + (f"; the model replayed {rr['replayed_records']:,} records" if rr.get("replayed_records") else "")
              + (f"; answer: {rr['result_rows']} VMAs" if "result_rows" in rr else ""))
    C.write_json(args.json, {"machine": C.machine(), "args": vars(args), "recording": rec, "analysis": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
