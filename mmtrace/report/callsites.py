"""The report's "who changed the address space" section (traces recorded with ``record -g``).

- ``callsites`` table: the top call sites of each process (``pid``,
  ``comm`` and the columns of :func:`mmtrace.detect.callsites.callsites`);
- ``callsite_holders`` table: for the process holding the most VMAs at its
  end, which call sites made the VMAs it holds (``callsite``, ``vmas``,
  ``bytes``);
- the same as text for the terminal (:func:`section_text`).

Kept apart from the rest of the report: it only reads ``trace.changes()``
(whose ``stack_id``/``callsite`` columns come from
:func:`mmtrace.detect.callsites.annotate_changes`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..detect.callsites import alive_at_end, callsites, has_stacks
from ..events.schema import stack_errors

__all__ = ["by_process", "holders", "section_text", "write_callsites", "stack_lines", "TITLE"]

TITLE = "Who changed the address space"


def by_process(trace, ch: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """The ``top`` call sites of each process by changes: ``pid``, ``comm``, then
    :data:`mmtrace.detect.callsites.CALLSITE_COLUMNS`."""
    cs = callsites(trace, ch=ch, per_process=True)
    if not len(cs):
        return cs
    cs = cs.groupby("pid", sort=False).head(top).reset_index(drop=True)
    comm = ch.drop_duplicates("pid", keep="last").set_index("pid")["comm"].astype(str) if "comm" in ch else None
    cs.insert(1, "comm", [comm.get(p, "") if comm is not None else "" for p in cs["pid"]])
    return cs


def holders(ch: pd.DataFrame) -> tuple[int | None, pd.DataFrame]:
    """(pid, table): the process holding the most VMAs at its end, and per call site
    the VMAs of it that call site made (``callsite``, ``vmas``, ``bytes``)."""
    cols = ["callsite", "vmas", "bytes"]
    if "stack_id" not in ch or not len(ch):
        return None, pd.DataFrame(columns=cols)
    ch = ch.sort_values("ts", kind="stable", ignore_index=True)
    alive = alive_at_end(ch)
    per_pid = pd.Series(alive).groupby(ch["pid"].to_numpy()).sum()
    if not len(per_pid) or per_pid.max() == 0:
        return None, pd.DataFrame(columns=cols)
    pid = int(per_pid.idxmax())
    sel = (ch["pid"].to_numpy() == pid) & (alive > 0)
    sub = ch[sel]
    # Bytes of the VMAs still held: the changes' after_vmas, counted once each.
    held = {}
    for site, after in zip(sub["callsite"].astype(str).tolist(), sub["after_vmas"].tolist()):
        for v in after or ():
            held[(v[0], v[1], v[2])] = site
    df = pd.DataFrame({"callsite": [s or "(no stack: kernel path)" for s in held.values()],
                       "bytes": [e - s for s, e, _ in held.keys()]})
    out = df.groupby("callsite").agg(vmas=("bytes", "size"), bytes=("bytes", "sum")).reset_index()
    # alive_at_end counted each change's VMAs still there; the held map, the VMAs themselves.
    return pid, out.sort_values(["vmas", "callsite"], ascending=[False, True], ignore_index=True)[cols]


def stack_lines(trace) -> list[str]:
    """``mmtrace summary``'s lines about record -g's stacks, counted from the records read
    (like the events): records with a stack, distinct stacks, records whose stack was lost."""
    if not has_stacks(trace):
        return []
    ids = [trace.raw_events(k)["stack_id"].to_numpy() for k in ("syscall", "proc")
           if k in trace.kinds and "stack_id" in trace.raw_events(k)]
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    lost = stack_errors(ids)
    n_lost = sum(v for k, v in lost.items() if k != "EFAULT")  # EFAULT: no user stack to take
    st = trace.table("stacks")
    text = (f"stacks (record -g): {int((ids >= 0).sum()):,} records with a stack, {len(st):,} distinct; "
            + (f"LOST the stack of {n_lost:,} records {lost} (a collision in the stack map)" if n_lost
               else "0 lost" + (f" ({lost['EFAULT']:,} without a user stack)" if lost.get("EFAULT") else "")))
    return [text]


def section_text(trace, ch: pd.DataFrame, top: int = 5, processes: int = 5) -> str:
    """The section as text: top call sites of the busiest processes, and the holders."""
    if not has_stacks(trace):
        return ""
    lines = [f"{TITLE} (record -g call sites: the innermost frame outside libc/ld.so)"]
    cs = by_process(trace, ch, top)
    if not len(cs):
        return lines[0] + "\n  no change has a stack\n"
    busiest = cs.groupby("pid")["changes"].sum().sort_values(ascending=False).index[:processes]
    for pid in busiest:
        g = cs[cs["pid"] == pid]
        lines.append(f"  {pid} {g['comm'].iloc[0]}:")
        for r in g.itertuples(index=False):
            lines.append(f"    {r.changes:>7,} changes  {r.maps:>6,} map {r.splits:>6,} split {r.merges:>6,} merge"
                         f"  {r.callsite}")
    pid, h = holders(ch)
    if pid is not None:
        lines.append(f"  VMAs held at the end by {pid} (the process holding the most), by the call site that made them:")
        for r in h.head(top).itertuples(index=False):
            lines.append(f"    {r.vmas:>7,} VMAs {int(r.bytes) / 1024:>12,.0f} KiB  {r.callsite}")
    return "\n".join(lines) + "\n"


def write_callsites(trace, ch: pd.DataFrame, out: Path, fmts: list[str]) -> dict[str, Path]:
    """Write the ``callsites`` and ``callsite_holders`` tables (each format of ``fmts``:
    csv, parquet) into ``out``; {} for a trace without stacks."""
    if not has_stacks(trace):
        return {}
    out = Path(out)
    tables = {"callsites": by_process(trace, ch, top=np.iinfo(np.int32).max), "callsite_holders": holders(ch)[1]}
    files = {}
    for name, df in tables.items():
        for f in fmts:
            p = out / f"{name}.{f}"
            if f == "csv":
                df.to_csv(p, index=False)
            else:
                df.to_parquet(p, index=False)
            files[name if f == fmts[0] else f"{name} ({f})"] = p
    return files
