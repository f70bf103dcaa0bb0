"""Which processes the model follows, and why not the others: :func:`modelled`.

The model rebuilds a tree from its stores plus exit-time syscall rules
(:mod:`mmtrace.model.rules`).  A process whose syscalls the trace cannot
hold is rebuilt from its stores only, which is silently wrong (whole-VMA
mprotect, exact-fit munmap clears...): it is said, per process, instead.

- **32-bit (compat) processes**, when the trace did not follow ia32
  syscalls.  They enter through ``do_int80_emulation``/``do_fast_syscall_32``
  (arch/x86/entry/syscall_32.c, ``ia32_sys_call``): the
  ``syscalls:sys_enter_*`` events are defined for the 64-bit table only
  (``__SYSCALL_DEFINEx`` metadata is per native syscall;
  ``arch_syscall_match_sym_name``/``arch_trace_is_compat_syscall`` make the
  ftrace syscall events ignore compat calls).  The recorder follows them
  through ``raw_syscalls:sys_enter/sys_exit`` by their i386 numbers
  (``collectors/syscalls.bpf.c`` MMT_COMPAT_SYSCALLS; the probe plan's
  ``features.compat_syscalls``) where the host allows it; otherwise
  (``features.compat_syscalls_missing`` says why, or an older trace) a compat
  process has no syscall rows and is reported not modelled.  It is known
  from its address space: a compat mm's ``mmap_base``/stack/vDSO are all
  below 4 GiB (``TASK_SIZE_32``, ``arch_pick_mmap_layout`` with
  ``in_32bit_syscall()``/``mmap_is_ia32()``; ``STACK_TOP`` = ``TASK_SIZE_32``
  for ``TIF_ADDR32``), while a 64-bit mm always has its stack and vDSO near
  ``TASK_SIZE_MAX`` (2**47 or 2**56).  Per exec (the new tree the exec event
  names) the highest ``vm_end`` of that tree at the exec event decides;
  for a process already running at attach, its snapshot; a fork child
  without exec inherits its parent's answer at the fork.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np
import pandas as pd

from ..events.schema import TW_VAL_IS_VMA
from ..trace.windows import KindReader, num

__all__ = ["modelled", "MODELLED_COLUMNS", "COMPAT_REASON"]

MODELLED_COLUMNS = ("pid", "modelled", "not_modelled_reason")

#: x86 TASK_SIZE_32 rounded up: every VMA of a compat mm ends at or below it.
_LIMIT_32 = 1 << 32

COMPAT_REASON = ("32-bit (compat) process: its ia32 syscalls were not followed, so its "
                 "munmap/mprotect/mremap/brk/mseal are not applied (its VMAs are from stores only)")


def _exec_tree_max_end(trace, execs: list[tuple[int, int, int]], em: dict[int, list[int]]) -> list[int]:
    """For each exec (ts, tgid, tree): the highest ``vm_end`` of the new tree at the
    exec event; -1 if it holds nothing.

    The tree is rebuilt from its own stores since the pointer's previous
    ``exit_mmap`` (a few dozen: the exec's setup).  Its highest address at the
    exec event, not any store's, decides: ``setup_arg_pages`` builds the
    stack at ``STACK_TOP_MAX`` and moves it down (``relocate_vma_down``) to a
    compat process's ``STACK_TOP`` below 4 GiB, stored as a clear of the old
    range.
    """
    from .vmatree import VmaTree

    trees = np.array(sorted({t for _, _, t in execs if t}), dtype=np.uint64)
    out = [-1] * len(execs)
    if len(trees) == 0:
        return out
    last_exec = max(ts for ts, _, _ in execs)

    def decode(getcol, n):
        tree = num(getcol("tree"), "tree")
        ts = num(getcol("ts"), "ts")
        idx = np.flatnonzero(np.isin(tree, trees) & (ts <= last_exec) & (num(getcol("op"), "op") == 0))
        fl = num(getcol("flags"), "flags").astype(np.int64)[idx]
        return {"ts": ts[idx], "tree": tree[idx], "index": num(getcol("index"), "index")[idx],
                "last": num(getcol("last"), "last")[idx], "vma": (fl & TW_VAL_IS_VMA) != 0}

    r = KindReader(trace, "tree_write", ("ts", "tree", "index", "last", "flags", "op"), decode)
    rows: dict[int, list[tuple]] = {}
    for k in range(len(r.parts)):
        c = r.load_cached(k)
        if c is None or len(c["ts"]) == 0:
            continue
        for t in np.unique(c["tree"]).tolist():
            m = np.flatnonzero(c["tree"] == np.uint64(t))
            rows.setdefault(int(t), []).extend(zip(c["ts"][m].tolist(), c["index"][m].tolist(),
                                                   c["last"][m].tolist(), c["vma"][m].tolist()))
    for i, (ts, _, tree) in enumerate(execs):
        ends = em.get(tree, [])
        j = bisect_right(ends, ts)
        born = ends[j - 1] if j else -(1 << 62)
        vt = VmaTree(tree, 0)
        for wts, lo, hi, isvma in sorted(rows.get(tree, ())):
            if born < wts <= ts:
                vt.assign(lo, min(hi, (1 << 63) - 2) + 1, (1,) if isvma else None)
        if len(vt):
            out[i] = vt.ends[-1]
    return out


def _table(trace, kind: str, cols: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = trace.raw_events(kind)
    except (KeyError, FileNotFoundError):  # no such event kind in this trace
        df = None
    return df if df is not None and len(df) else pd.DataFrame({c: [] for c in cols})


def _compat_followed(trace) -> tuple[bool, str]:
    """(were ia32 syscalls followed, why not) from the trace's probe plan."""
    feats = ((getattr(trace, "metadata", None) or {}).get("probe_plan") or {}).get("features") or {}
    if feats.get("compat_syscalls"):
        return True, ""
    why = feats.get("compat_syscalls_missing") or "this trace predates following them"
    return False, f"{COMPAT_REASON} ({why})"


def modelled(trace, pids=None) -> pd.DataFrame:
    """Per traced process: can the model follow it?

    Columns: ``pid`` (tgid), ``modelled`` (bool), ``not_modelled_reason``
    ("" when modelled; else one sentence: :data:`COMPAT_REASON` and why the
    recorder did not follow ia32 syscalls).  One row per pid of ``pids``
    (default: ``trace.processes()``).
    """
    pids = list(trace.processes()["pid"]) if pids is None else list(pids)
    followed, reason = _compat_followed(trace)
    if followed:
        return pd.DataFrame({"pid": pd.array(pids, dtype="int64"), "modelled": [True] * len(pids),
                             "not_modelled_reason": [""] * len(pids)}, columns=list(MODELLED_COLUMNS))
    procs = _table(trace, "proc", ("what", "ts", "tgid", "child_tgid", "tree", "flags"))
    if len(procs) == 0:
        procs = pd.DataFrame({c: [] for c in ("what", "ts", "tgid", "child_tgid", "tree", "flags")})
    procs = procs.sort_values("ts", kind="stable")
    em_df = _table(trace, "exit_mmap", ("ts", "mt"))
    em: dict[int, list[int]] = {}
    for ts, mt in zip(em_df["ts"].tolist(), em_df["mt"].tolist()):
        em.setdefault(int(mt), []).append(int(ts))
    for v in em.values():
        v.sort()
    execs = [(int(ts), int(tg), int(tr)) for w, ts, tg, tr in zip(procs["what"], procs["ts"], procs["tgid"], procs["tree"])
             if w == "exec"]
    max_end = _exec_tree_max_end(trace, execs, em)
    exec_compat = {(ts, tg): 0 <= e <= _LIMIT_32 for (ts, tg, _), e in zip(execs, max_end)}

    # attached processes: their snapshot
    state: dict[int, bool] = {}
    try:
        snaps = trace.snapshots()
    except Exception:  # a trace without snapshots
        snaps = None
    if snaps is not None and len(snaps):
        att = snaps[snaps["when"].astype(str) == "attach"]
        att = att[att["path"].astype(str) != "[vsyscall]"]
        for pid, e in att.groupby("pid")["end"].max().items():
            state[int(pid)] = int(e) <= _LIMIT_32
    ever: dict[int, bool] = dict(state)
    # replay fork/exec in ts order: the answer of a process now
    for w, ts, tg, child, fl in zip(procs["what"], procs["ts"], procs["tgid"], procs["child_tgid"], procs["flags"]):
        tg = int(tg)
        if w == "fork" and not int(fl) & 0x1:
            c = state.get(tg, False)
            state[int(child)] = c
            ever[int(child)] = ever.get(int(child), False) or c
        elif w == "exec":
            c = exec_compat.get((int(ts), tg), False)
            state[tg] = c
            ever[tg] = ever.get(tg, False) or c
    bad = [bool(ever.get(int(p), False)) for p in pids]
    return pd.DataFrame({"pid": pd.array(pids, dtype="int64"), "modelled": [not b for b in bad],
                         "not_modelled_reason": [reason if b else "" for b in bad]},
                        columns=list(MODELLED_COLUMNS))

