"""A short text summary of a trace: what was recorded and whether anything was lost."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..trace.reader import TraceFile

__all__ = ["summarize", "damage_lines", "lost_text"]


def damage_lines(t: TraceFile, limit: int = 8) -> list[str]:
    """What a summary says first about a damaged or incomplete trace (no lines for an intact, complete one)."""
    out = []
    if t.damage:
        out.append(f"DAMAGED    {len(t.damage)} problem(s) reading this trace; what could be read follows:")
        out += [f"  - {d}" for d in t.damage[:limit]]
        if len(t.damage) > limit:
            out.append(f"  ... {len(t.damage) - limit} more (trace.damage in Python)")
        cut = t.model_reliable_until()
        if cut is not None:
            start = int(t.metadata.get("start_ns") or 0)
            at = f"{(cut - start) / 1e9:.3f}s into the recording" if start and cut >= start else f"ts {cut}"
            out.append(f"  the rebuilt VMA trees may be stale from {at} on: no model finding is reported after it")
    if not t.complete:
        out.append(f"INCOMPLETE the recording did not stop cleanly ({t.metadata.get('stop_reason') or 'killed?'}): "
                   "events up to its last flush are kept; duration is to the last event; lost events unknown")
    return out


def lost_text(t: TraceFile) -> str:
    """``0``, ``N {kind: n}``, or ``unknown`` (with what was counted) when the counts cannot be trusted."""
    lost = t.lost
    n_lost = sum(lost.values())
    counted = "0" if not n_lost else f"{n_lost:,} " + str({k: v for k, v in lost.items() if v})
    if not t.lost_known:
        return "unknown (the recording did not stop cleanly" + (f"; {counted} counted before" if lost else "") + ")"
    return counted


def summarize(path: str | Path | TraceFile) -> str:
    """Text summary: damage first, header, processes, events by kind, syscalls, tree writes by fn, lost."""
    t = path if isinstance(path, TraceFile) else TraceFile(path)
    m = t.metadata
    out = damage_lines(t)
    out += [
        f"trace      {t.path}  ({'complete' if t.complete else 'INCOMPLETE'}{', DAMAGED' if t.damage else ''})",
        f"kernel     {m.get('kernel_release')} on {m.get('host')}   recorded {t.duration_s:.2f}s"
        + ("" if t.complete else " (to the last event)") + f"   stop: {m.get('stop_reason') or 'none recorded'}",
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
    # Counted from the events read, not metadata.json: a damaged or killed
    # trace's metadata disagrees with what is there.
    counts = {k: len(t.raw_events(k)) for k in t.kinds}
    counts = {k: n for k, n in counts.items() if n}
    meta_counts = m.get("events") or {}
    out.append("\nevents by kind (read)" + ("" if not meta_counts or meta_counts == counts or not t.complete
                                            else "  [metadata.json counted: " + ", ".join(
                                                f"{k} {v:,}" for k, v in sorted(meta_counts.items())) + "]"))
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
    out.append("\nlost events: " + lost_text(t))
    from .callsites import stack_lines  # record -g

    out += stack_lines(t)
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
