"""Every change of every tree, grouped by cause and classified from before/after.

A replay with an observer: the changes a tree goes through are grouped by
their cause (one traced syscall of one thread, from its first store to its
exit-time corrections; or a kernel path: ``fork_copy``, ``exec_setup``,
``exit``, ``stack_growth``, other ``kernel`` stores), and each group is
classified by comparing the tree before and after it: the VMAs that went
away (``before``) and those that appeared (``after``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np
import pandas as pd

from .replay import Engine, snapshot_trees
from .vmatree import VM_GROWSDOWN, VmaTree, perms_of

__all__ = ["changes", "CHANGE_COLUMNS", "classify"]

_NOSPAN = 1 << 65
_PAGE = 4096  # lengths are rounded up to pages by the kernel: widen spans by one
_NO_ARGS = (0, 0, 0, 0, 0, 0, 0)  # arg0..arg5, ret of a kernel path

CHANGE_COLUMNS = (
    "ts", "ts_end", "pid", "tid", "tree", "cause", "kind", "syscall",
    "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "ret",
    "lo", "hi", "n_before", "n_after", "bytes_before", "bytes_after", "before", "after",
    "before_vmas", "after_vmas",
)


def _vmas(starts, ends, vals) -> list[tuple[int, int, int, int]]:
    """(start, end, ptr, vm_flags) per VMA (pieces of one pointer joined)."""
    out: list[tuple[int, int, int, int]] = []
    for s, e, v in zip(starts, ends, vals):
        if out and v[0] and out[-1][2] == v[0] and out[-1][3] == v[1] and out[-1][1] == s:
            out[-1] = (out[-1][0], e, v[0], v[1])
        else:
            out.append((s, e, v[0], v[1]))
    return out


def classify(before: list[tuple], after: list[tuple], *, moved: bool = False) -> str | None:
    """Kind of a change from the VMAs that went away and those that appeared.

    ``before``/``after`` hold (start, end, ...) tuples; None when both are empty.
    Same bytes covered: more VMAs is a ``split``, fewer a ``merge``, as many a
    ``protect``.  More bytes: a new VMA is a ``map``, one VMA grown an
    ``expand``, VMAs joined a ``merge``.  Fewer bytes: a VMA cut ``shrink``,
    otherwise ``unmap``.  ``moved``: an mremap that relocated (``move``).
    """
    if not before and not after:
        return None
    if not before:
        return "map"
    if not after:
        return "unmap"
    if moved:
        return "move"
    nb, na = len(before), len(after)
    cb = sum(e - s for s, e, *_ in before)
    ca = sum(e - s for s, e, *_ in after)
    if ca == cb:
        return "split" if na > nb else "merge" if na < nb else "protect"
    if ca > cb:
        return "map" if na > nb else "expand" if na == nb else "merge"
    return "shrink" if na == nb else "unmap"


class _Observer:
    """Collects change rows while an :class:`Engine` replays."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.sc = engine.sc
        self.open: dict[int, dict] = {}  # tree uid -> open group
        self.label: dict[int, str] = {}  # tree uid -> how it was born
        self.owner: dict[int, int] = {}  # tree uid -> tgid
        self.rows: list[tuple] = []

    def _pid(self, t: VmaTree, fallback: int) -> int:
        p = self.owner.get(t.uid)
        if p is None:
            for tgid, bt in self.e.bind.items():
                if bt is t:
                    return tgid
            return fallback
        return p

    def _open(self, t: VmaTree, key, ts: int, tid: int, tgid: int, cause: str, row: int) -> dict:
        g = self.open.get(t.uid)
        if g is not None and g["key"] == key:
            return g
        if g is not None:
            self._close(t)
        # The tree as it was (C-level list copies); the change's span grows
        # with each write and fix-up, and only that span is compared at close.
        g = {
            "key": key, "ts": ts, "ts_end": ts, "tid": tid, "tgid": tgid, "cause": cause, "row": row,
            "snap": (t.starts[:], t.ends[:], t.vals[:]), "lo": _NOSPAN, "hi": 0,
        }
        self.open[t.uid] = g
        return g

    @staticmethod
    def _span(g: dict, lo: int, hi: int) -> None:
        if lo < g["lo"]:
            g["lo"] = lo
        if hi > g["hi"]:
            g["hi"] = hi

    @staticmethod
    def _window(starts, ends, vals, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """VMAs of the pieces overlapping [lo, hi), plus one neighbour on each side (merges)."""
        if lo >= hi:
            return _vmas(starts, ends, vals)
        i0 = max(0, bisect_left(ends, lo) - 1)
        i1 = min(len(starts), bisect_right(starts, hi) + 1)
        return _vmas(starts[i0:i1], ends[i0:i1], vals[i0:i1])

    def _close(self, t: VmaTree, *, force_kind: str | None = None, ts_end: int | None = None) -> None:
        g = self.open.pop(t.uid, None)
        if g is None:
            return
        lo, hi = g["lo"], g["hi"]
        if lo == _NOSPAN:
            lo, hi = 0, 0  # no span known: compare whole trees
        before = self._window(*g["snap"], lo, hi)
        after_all = self._window(t.starts, t.ends, t.vals, lo, hi)
        bset, aset = set(before), set(after_all)
        removed = sorted(bset - aset)
        added = sorted(aset - bset)
        row = g["row"]
        name = self.sc["syscall"][row] if row >= 0 else ""
        moved = False
        if name == "mremap":
            ret = self.sc["ret"][row]
            moved = ret >= 0 and ret != self.sc["arg0"][row]
        kind = force_kind or classify(removed, added, moved=moved)
        if kind is None:
            return
        lbl = self.label.get(t.uid)
        if lbl in ("fork_copy", "exec_setup") and t.uid not in self.owner and kind != "exit":
            kind = lbl  # stores into a new tree before its fork/exec event: all setup
        elif kind == "protect" and [x[3] & 0xF for x in removed] == [x[3] & 0xF for x in added]:
            kind = "map"  # same ranges and perms, new VMAs: a mapping replaced in place
        cause = g["cause"]
        if cause == "kernel" and kind == "expand" and any(f & VM_GROWSDOWN for *_, f in added):
            cause = "stack_growth"
        if removed and added:
            lo_, hi_ = min(removed[0][0], added[0][0]), max(removed[-1][1], added[-1][1])
        elif removed:
            lo_, hi_ = removed[0][0], removed[-1][1]
        else:
            lo_, hi_ = added[0][0], added[-1][1]
        sc = self.sc
        if row >= 0:
            args = (sc["arg0"][row], sc["arg1"][row], sc["arg2"][row], sc["arg3"][row],
                    sc["arg4"][row], sc["arg5"][row], sc["ret"][row])
        else:
            args = _NO_ARGS
        # A tuple in CHANGE_COLUMNS order: a dict per row cost twice the time
        # and memory on million-event traces.
        self.rows.append((
            g["ts"], ts_end if ts_end is not None else g["ts_end"],
            self._pid(t, g["tgid"]), g["tid"], t.ptr or 0, cause, kind, name, *args,
            lo_, hi_, len(removed), len(added),
            sum([e - s for s, e, _, _ in removed]), sum([e - s for s, e, _, _ in added]),
            [(s, e, perms_of(f)) for s, e, _, f in removed],
            [(s, e, perms_of(f)) for s, e, _, f in added],
            removed,  # before_vmas: (start, end, vma pointer, vm_flags)
            added,
        ))

    # -- engine hooks ----------------------------------------------------------
    def born(self, t: VmaTree, ts: int, tgid: int, label: str) -> None:
        self.label[t.uid] = label

    def write(self, t: VmaTree, rec: tuple) -> None:
        ts, ptr, tid, tgid, cur, cause = rec[1], rec[2], rec[7], rec[8], rec[9], rec[14]
        if ptr != cur and self.label.get(t.uid) in ("fork_copy", "exec_setup"):
            label = self.label[t.uid]
            key = ("k", label)
        elif cause >= 0:
            label = self.sc["syscall"][cause]
            key = ("sc", cause)
        else:
            label = "kernel"
            key = ("k", tid)
        g = self._open(t, key, ts, tid, tgid, label, cause if key[0] == "sc" else -1)
        g["ts_end"] = ts
        self._span(g, rec[3], rec[4])

    def syscall_exit_begin(self, t: VmaTree, row: int) -> None:
        sc = self.sc
        g = self._open(t, ("sc", row), sc["ts_enter"][row], sc["tid"][row], sc["tgid"][row], sc["syscall"][row], row)
        g["ts_end"] = sc["ts"][row]
        # What the exit-time fix-up may touch (see Engine._on_syscall).
        name, a0, a1, ret = sc["syscall"][row], sc["arg0"][row], sc["arg1"][row], sc["ret"][row]
        if name in ("munmap", "mprotect", "pkey_mprotect", "madvise", "mseal"):
            self._span(g, a0, a0 + a1 + _PAGE)
        elif name == "mremap":
            self._span(g, a0, a0 + a1 + _PAGE)
            if 0 <= ret < (1 << 63):
                self._span(g, ret, ret + sc["arg2"][row] + _PAGE)
        elif name == "mmap" and 0 <= ret < (1 << 63):
            self._span(g, ret, ret + a1 + _PAGE)
        else:
            self._span(g, 0, 1 << 64)  # brk and the rest: compare whole trees

    def syscall_exit_end(self, t: VmaTree, row: int) -> None:
        self._close(t)

    def touch(self, t: VmaTree, lo: int, hi: int, ts: int, tgid: int) -> None:
        if t.uid not in self.open:
            self._open(t, ("k", "fork_copy"), ts, tgid, tgid, "fork_copy", -1)
        self._span(self.open[t.uid], lo, hi)

    def fork_done(self, t: VmaTree, ts: int, child: int) -> None:
        self.owner[t.uid] = child
        if t.uid in self.open:
            self._close(t, force_kind="fork_copy", ts_end=ts)

    def exec_done(self, t: VmaTree, ts: int, tgid: int) -> None:
        self.owner[t.uid] = tgid
        if t.uid in self.open:
            self._close(t, force_kind="exec_setup", ts_end=ts)

    def exit(self, t: VmaTree, ts: int) -> None:
        self._close(t)
        self._open(t, ("k", "exit"), ts, 0, self._pid(t, 0), "exit", -1)
        g = self.open[t.uid]
        self._span(g, 0, 1 << 64)
        t.starts, t.ends, t.vals = [], [], []  # what exit_mmap leaves; the engine drops it too
        self._close(t, force_kind="exit" if g["snap"][0] else None, ts_end=ts)

    def finish(self) -> None:
        for uid in list(self.open):
            t = next((x for x in self.e.trees.values() if x.uid == uid), None)
            if t is None:
                self.open.pop(uid)
            else:
                self._close(t)


def changes(trace, pid: int | None = None) -> pd.DataFrame:
    """One row per change of a tree, grouped by cause; all processes, or tgid ``pid``.

    Columns: ``ts``, ``ts_end`` (first and last event of the group), ``pid``
    (tgid owning the tree), ``tid``, ``tree`` (maple tree pointer), ``cause``
    (the syscall name, or ``fork_copy``, ``exec_setup``, ``exit``,
    ``stack_growth``, ``kernel``), ``kind`` (map, unmap, split, merge,
    expand, shrink, move, protect, fork_copy, exec_setup, exit),
    ``syscall`` and ``arg0``..``arg5``, ``ret`` (empty/0 for kernel paths),
    ``lo``/``hi`` (the span of the VMAs that changed), ``n_before``,
    ``n_after``, ``bytes_before``, ``bytes_after``, ``before``/``after``
    (lists of (start, end, perms) of the VMAs that went away / appeared),
    ``before_vmas``/``after_vmas`` (the same VMAs as (start, end, vma
    pointer, vm_flags)).
    """
    from .stream import build_stream  # with causes: the enclosing syscall of every store

    st = build_stream(trace, with_causes=True)
    try:
        snaps = trace.snapshots()
    except Exception:
        snaps = None
    e = Engine(st.source, snapshot_trees(snaps))
    e.load(st.window)
    obs = _Observer(e)
    e.observer = obs
    e.run_records(st.records)
    obs.finish()
    df = pd.DataFrame(obs.rows, columns=list(CHANGE_COLUMNS))
    for c in ("ts", "ts_end", "pid", "tid", "ret", "n_before", "n_after"):
        df[c] = df[c].astype(np.int64)
    for c in ("tree", "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "lo", "hi", "bytes_before", "bytes_after"):
        df[c] = df[c].astype(np.uint64)
    df = df.sort_values("ts", kind="stable", ignore_index=True)
    if pid is not None:
        df = df[df["pid"] == int(pid)].reset_index(drop=True)
    return df
