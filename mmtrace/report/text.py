"""The report as text for a terminal: a few tables people read first."""

from __future__ import annotations

import shutil
import textwrap

import pandas as pd

from .frames import report_data

__all__ = ["report_text", "process_table", "kind_table", "split_table", "merge_table", "anomaly_table", "lost_table"]


def _ms(ts, t0: int) -> str:
    return "" if ts is pd.NA or ts != ts else f"{(int(ts) - t0) / 1e6:.3f}"


def process_table(rd, limit: int = 20) -> pd.DataFrame:
    """Per process: pid, ppid, comm, start/exit (ms since recording start), changes, VMAs start/end/peak, splits,
    merges, modelled ("yes"/"NO": see ``not_modelled_reason`` of :meth:`mmtrace.Trace.processes`)."""
    p = rd.processes()
    out = pd.DataFrame({
        "pid": p["pid"], "ppid": p["ppid"], "comm": p["comm"].astype(str),
        "start ms": [_ms(v, rd.t0) for v in p["start_ts"]], "exit ms": [_ms(v, rd.t0) for v in p["exit_ts"]],
        "changes": p["changes"], "VMAs start": p["vmas_start"], "VMAs end": p["vmas_end"],
        "VMAs peak": p["vmas_peak"], "splits": p["splits"], "merges": p["merges"],
    })
    if "modelled" in p:
        out["modelled"] = ["yes" if m else "NO" for m in p["modelled"]]
    order = rd.busiest(limit)
    return out.set_index("pid").loc[order].reset_index() if order else out


def kind_table(rd, columns: int = 5) -> pd.DataFrame:
    """Changes by kind: one row per kind, a column per busy process and ``total``."""
    ch = rd.change_index()
    if len(ch) == 0:
        return pd.DataFrame()
    t = pd.crosstab(ch["kind"], ch["pid"])
    pids = [p for p in rd.busiest(columns) if p in t.columns]
    out = t[pids].copy()
    out.columns = [f"{p} {rd.comm_of(p)}"[:22] for p in pids]
    if len(t.columns) > len(pids):
        out["others"] = t.drop(columns=pids).sum(axis=1)
    out["total"] = t.sum(axis=1)
    out.index.name = "kind"
    return out.sort_values("total", ascending=False)


def _by_cause(df: pd.DataFrame, kind: bool = False) -> pd.DataFrame:
    if df is None or len(df) == 0:
        return pd.DataFrame()
    keys = (["kind"] if kind else []) + ["cause"]
    g = df.groupby(keys, observed=True).agg(changes=("count", "size"), points=("count", "sum"),
                                             processes=("pid", "nunique"))
    return g.sort_values("points", ascending=False)


def split_table(rd) -> pd.DataFrame:
    """Splits by cause: changes, split points, processes."""
    return _by_cause(rd.safe("split_index"))


def merge_table(rd) -> pd.DataFrame:
    """Merges by kind and cause: changes, merge points, processes."""
    return _by_cause(rd.safe("merge_index"), kind=True)


def anomaly_table(rd) -> pd.DataFrame:
    """Anomalies counted by severity and kind."""
    a = rd.safe("anomalies")
    if a is None or len(a) == 0:
        return pd.DataFrame()
    return a.groupby(["severity", "kind"]).size().rename("count").to_frame()


def lost_table(rd) -> pd.DataFrame:
    """Events lost by the kernel (ring buffer full), per kind, with the events kept."""
    kept = rd.trace.metadata.get("events") or {}
    lost = rd.trace.lost
    kinds = sorted(set(kept) | {k for k, v in lost.items() if v})
    return pd.DataFrame({"kept": [int(kept.get(k, 0)) for k in kinds], "lost": [int(lost.get(k, 0)) for k in kinds]},
                        index=pd.Index(kinds, name="kind"))


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


def report_text(trace, *, files: dict | None = None, out_dir=None, width: int | None = None,
                anomalies_shown: int = 10) -> str:
    """The terminal summary: header, processes, changes by kind, splits, merges, anomalies, lost events."""
    rd = report_data(trace)
    t = rd.trace
    m = t.metadata
    width = width or min(shutil.get_terminal_size((110, 24)).columns, 160)
    dur = (rd.t1 - rd.t0) / 1e9 if rd.t1 and rd.t0 else 0.0
    from .summary import damage_lines, lost_text

    out = damage_lines(t) + [
        f"trace      {t.path}  ({'complete' if t.complete else 'INCOMPLETE: ' + str(m.get('stop_reason'))})",
        f"kernel     {m.get('kernel_release')} on {m.get('host', '?')}   recorded {dur:.3f} s   stop: {m.get('stop_reason')}",
        f"command    {' '.join(m.get('command_line') or [])}",
    ]
    if m.get("synthetic"):
        out.append(f"NOTE       {m['synthetic']}")
    for name, why in rd.skipped().items():  # an empty table is not "nothing happened"
        out.append(f"SKIPPED    {name}: {why}")
    with pd.option_context("display.width", width, "display.max_columns", 30, "display.max_colwidth", 40):
        procs = rd.safe("processes")
        n = 0 if procs is None else len(procs)
        out.append(f"\nprocesses ({n}; VMAs as /proc/PID/maps would count them; times in ms since recording start)")
        if n:
            pt = process_table(rd)
            out.append(_indent(pt.to_string(index=False)))
            if n > len(pt):
                out.append(f"  ... {n - len(pt)} more in processes.csv")
            if "modelled" in procs:
                for r in procs[~procs["modelled"].astype(bool)].itertuples(index=False):
                    out.append(f"  NOT MODELLED: pid {r.pid} {r.comm}: {r.not_modelled_reason}")
            if rd.launcher_until():
                out.append("  (the command started by 'record -c' is counted from its exec: before it, the process "
                           "was mmtrace's own launcher)")
        ch = rd.safe("change_index")
        out.append(f"\nchanges by kind ({0 if ch is None else len(ch):,} changes of VMA trees)")
        kt = kind_table(rd) if ch is not None else pd.DataFrame()
        out.append(_indent(kt.to_string()) if len(kt) else "  none")
        st = split_table(rd)
        s = rd.safe("split_index")
        out.append(f"\nsplits: {0 if s is None else int(s['count'].sum()):,} split points in "
                   f"{0 if s is None else len(s):,} changes, by cause")
        out.append(_indent(st.to_string()) if len(st) else "  none")
        mt = merge_table(rd)
        mg = rd.safe("merge_index")
        out.append(f"\nmerges: {0 if mg is None else int(mg['count'].sum()):,} merge points in "
                   f"{0 if mg is None else len(mg):,} changes, by kind and cause")
        out.append(_indent(mt.to_string()) if len(mt) else "  none")
        a = rd.safe("anomalies")
        if a is None:
            out.append("\nanomalies: not computed (see the warning below)")
        elif len(a) == 0:
            out.append("\nanomalies: none")
        else:
            sev = a["severity"].value_counts()
            out.append(f"\nanomalies: {len(a)} ({', '.join(f'{v} {k}' for k, v in sev.items())})")
            out.append(_indent(anomaly_table(rd).to_string()))
            for r in a.head(anomalies_shown).itertuples(index=False):
                head = f"{_ms(r.ts, rd.t0)} ms  pid {r.pid} {r.comm}  {r.severity}  {r.kind}"
                out.append("  - " + head)
                out.append(textwrap.fill(str(r.explanation), width=max(40, width - 6), initial_indent="      ",
                                         subsequent_indent="      "))
            if len(a) > anomalies_shown:
                out.append(f"  ... {len(a) - anomalies_shown} more in anomalies.csv")
        lt = lost_table(rd)
        n_lost = int(lt["lost"].sum()) if len(lt) else 0
        if not t.lost_known:
            out.append(f"\nlost events: {lost_text(t)}")
        else:
            out.append(f"\nlost events: {n_lost:,}" + ("" if n_lost else " (the kernel handed over every event)"))
        if len(lt):
            out.append(_indent(lt.T.to_string()))
    if files:
        out.append(f"\nreport written to {out_dir}/" if out_dir else "\nfiles")
        for name, path in files.items():
            out.append(f"  {path.name:<26} {name}")
    return "\n".join(out)
