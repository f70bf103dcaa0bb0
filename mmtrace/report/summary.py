"""A short text summary of a trace: what was recorded and whether anything was lost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..trace.reader import TraceFile

__all__ = ["summarize"]


def summarize(path: str | Path | TraceFile) -> str:
    """Text summary: header, processes, events by kind, syscalls, tree writes by fn, lost."""
    t = path if isinstance(path, TraceFile) else TraceFile(path)
    m = t.metadata
    dur = ((m.get("stop_ns") or 0) - (m.get("start_ns") or 0)) / 1e9
    out = [
        f"trace      {t.path}  ({'complete' if t.complete else 'INCOMPLETE: ' + str(m.get('stop_reason'))})",
        f"kernel     {m.get('kernel_release')} on {m.get('host')}   recorded {dur:.2f}s   "
        f"stop: {m.get('stop_reason')}",
        f"command    {' '.join(m.get('command_line') or [])}",
    ]
    procs = t.processes()
    out.append(f"\nprocesses ({len(procs)})")
    if len(procs):
        show = procs.assign(
            exec=procs["exec"].map(lambda x: " -> ".join(x) if len(x) else ""),
        )[["pid", "ppid", "comm", "threads", "exec"]]
        out.append(_indent(show.head(30).to_string(index=False)))
        if len(procs) > 30:
            out.append(f"  ... {len(procs) - 30} more")
    counts = m.get("events") or {}
    out.append("\nevents by kind")
    out.append(_indent(pd.Series(counts, dtype="int64").sort_values(ascending=False).to_string() if counts else "none"))
    sc = t.raw_events("syscall")
    if len(sc):
        g = sc.groupby("syscall", observed=True).agg(calls=("ret", "size"), failed=("ret", lambda r: int((r < 0).sum())))
        out.append("\nsyscalls")
        out.append(_indent(g.sort_values("calls", ascending=False).to_string()))
    tw = t.raw_events("tree_write")
    if len(tw):
        out.append("\nmaple tree events by fn (all trees / mm trees)")
        mm = (tw["flags"] & 0x6) != 0
        g = pd.DataFrame({"all": tw.groupby("fn", observed=True).size(), "mm": tw[mm].groupby("fn", observed=True).size()})
        out.append(_indent(g.fillna(0).astype("int64").sort_values("all", ascending=False).to_string()))
    lost = t.lost
    n_lost = sum(lost.values())
    out.append("\nlost events: " + ("0" if not n_lost else f"{n_lost:,} " + str({k: v for k, v in lost.items() if v})))
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
