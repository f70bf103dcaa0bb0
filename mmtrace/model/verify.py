"""The rebuilt VMA trees checked against /proc/PID/maps checkpoints (``mmtrace verify``).

A checkpoint (see :mod:`mmtrace.events.procmaps`) is /proc/self/maps read
between ``t_before`` and ``t_after`` by the process itself, which changes no
mapping in between.  Every tree change of the syscalls before it has an event
with ts < t_before (a syscall's exit record is stamped before it returns), so
the model at ``t_before`` must equal it, exactly on (start, end, perms),
``[vsyscall]`` ignored (it is not in the tree), unless other threads of the
process changed the tree while it was read.

Then the read is not one instant.  /proc/PID/maps shows one VMA at a time, in
address order: since v6.17 ("fs/proc/task_mmu: read proc/pid/maps under
per-vma lock", ``lock_next_vma`` in mm/mmap_lock.c) each VMA is found under
RCU from the end of the one before (the gap before it is seen at that
instant) and read under its own VMA lock, and other threads may change the
tree between two VMAs; before v6.17 each read() chunk is read under
mmap_read_lock, one instant per chunk.  So a checkpoint matches when some
non-decreasing instants in [t_before, t_after], one per line in address
order (and one for the end), have the model show that line, with nothing
in the gap before it, at its instant (:func:`_sweep_matches`).  The model's
states in between are taken at every event instant (and 1 ns after) of the
trace in the interval.  :attr:`VerifyResult.swept` counts the checkpoints
that matched only so.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from ..events.procmaps import read_checkpoints
from ..trace.reader import TraceFile
from .model import Model
from .vmatree import join_pieces, perms_of

__all__ = ["verify", "VerifyResult", "Mismatch"]


@dataclass
class Mismatch:
    """One checkpoint the model does not reproduce: lines only in maps, only in the model."""

    pid: int
    seq: int
    op: str
    t_before: int
    missing: list[tuple[int, int, str]]  # in the checkpoint, not in the model
    extra: list[tuple[int, int, str]]  # in the model, not in the checkpoint

    def describe(self, limit: int = 8) -> str:
        lines = [f"pid {self.pid} seq {self.seq} op={self.op} t_before={self.t_before}:"]
        miss = {(s, e): p for s, e, p in self.missing}
        extra = {(s, e): p for s, e, p in self.extra}
        shown = 0
        for k in sorted(set(miss) & set(extra)):
            if shown < limit:
                lines.append(f"  different {k[0]:x}-{k[1]:x}: maps {miss[k]} model {extra[k]}")
            shown += 1
        for s, e, p in sorted(self.missing):
            if (s, e) not in extra:
                if shown < limit:
                    lines.append(f"  missing   {s:x}-{e:x} {p}")
                shown += 1
        for s, e, p in sorted(self.extra):
            if (s, e) not in miss:
                if shown < limit:
                    lines.append(f"  extra     {s:x}-{e:x} {p}")
                shown += 1
        if shown > limit:
            lines.append(f"  ... {shown - limit} more")
        return "\n".join(lines)


@dataclass
class VerifyResult:
    """Per-pid ``(matched, total)`` and the mismatches, in checkpoint order."""

    per_pid: dict[int, tuple[int, int]] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    swept: int = 0  # matched by no single instant, by a read in address order over [t_before, t_after]

    @property
    def matched(self) -> int:
        return sum(m for m, _ in self.per_pid.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.per_pid.values())

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.matched == self.total


def _model_lines(raw) -> list[tuple[int, int, str]]:
    """(start, end, perms) of a tree's raw lists, one line per VMA."""
    if raw is None:
        return []
    return [(s, e, perms_of(v[1])) for s, e, v in join_pieces(*raw)]


def _sweep_matches(lines: list[tuple[int, int, str]], states: list[list[tuple[int, int, str]]]) -> bool:
    """Could a reader walking the tree in address order, while it went through
    ``states`` (the model's lines at increasing instants), have read ``lines``?

    Unit ``i`` is line ``i`` with the gap before it (from the previous line's
    end), seen at one instant; the last unit is the gap after the last line.
    Greedy: each unit at the first state, not before the previous unit's, that
    shows it; the earliest choice leaves the most states to the units after.
    """
    idx = []
    for st in states:
        starts = [x[0] for x in st]
        idx.append((starts, [x[1] for x in st], {x[0]: x for x in st}))

    def empty(k: int, g0: int, g1: int) -> bool:  # no line of state k meets [g0, g1)
        starts, ends, _ = idx[k]
        j = bisect_right(starts, g0) - 1
        if j >= 0 and starts[j] < g1 and ends[j] > g0:
            return False
        return j + 1 >= len(starts) or starts[j + 1] >= g1

    k = 0
    prev = 0
    for line in [*lines, None]:
        while k < len(states):
            if line is None:
                ok = empty(k, prev, 1 << 64)
            else:
                ok = idx[k][2].get(line[0]) == line and empty(k, prev, line[0])
            if ok:
                break
            k += 1
        if k == len(states):
            return False
        if line is not None:
            prev = line[1]
    return True


def _event_instants(trace) -> np.ndarray:
    """Sorted ts of every event that may change a tree (and each + 1 ns: a clear
    placed right after its call's last write, :func:`mmtrace.model.stream._clear_instants`)."""
    got = []
    for kind in ("tree_write", "syscall", "proc", "exit_mmap", "mmap_lock"):
        try:
            df = trace.raw_events(kind)
        except (KeyError, FileNotFoundError):
            continue
        if df is not None and len(df):
            got.append(df["ts"].to_numpy(dtype=np.int64))
    if not got:
        return np.zeros(0, np.int64)
    ts = np.unique(np.concatenate(got))
    return np.unique(np.concatenate((ts, ts + 1)))


def verify(trace_path, checkpoints_dir, *, model: Model | None = None) -> VerifyResult:
    """Compare the model of ``trace_path`` (a path or an opened trace) with every checkpoint in ``checkpoints_dir``."""
    cps = read_checkpoints(checkpoints_dir)
    cps = cps[cps["path"] != "[vsyscall]"] if len(cps) else cps
    m = model or (trace_path.model if hasattr(trace_path, "model") else Model(TraceFile(trace_path)))
    res = VerifyResult()
    if len(cps) == 0:
        return res
    # One group per checkpoint (pid, seq); its lines as a list of tuples.
    key = cps["pid"].to_numpy(dtype=np.int64) * (1 << 24) + cps["seq"].to_numpy(dtype=np.int64)
    starts = cps["start"].tolist()
    ends = cps["end"].tolist()
    perms = cps["perms"].astype(str).tolist()
    bounds = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    groups = []
    pid_l, seq_l, op_l = cps["pid"].tolist(), cps["seq"].tolist(), cps["op"].astype(str).tolist()
    tb_l, ta_l = cps["t_before"].tolist(), cps["t_after"].tolist()
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        groups.append((pid_l[a], seq_l[a], op_l[a], tb_l[a], ta_l[a], list(zip(starts[a:b], ends[a:b], perms[a:b]))))
    # Checkpoints with no lines (all [vsyscall]) cannot exist in practice; ignore.
    queries = [(g[0], g[3]) for g in groups] + [(g[0], g[4]) for g in groups]
    answers: dict[tuple[int, int], list] = {}
    for pid, at, raw in m.sweep(queries, frames=False):
        answers[(pid, at)] = _model_lines(raw)
    failed = [g for g in groups if answers[(g[0], g[3])] != g[5] and answers[(g[0], g[4])] != g[5]]
    swept: set[tuple[int, int]] = set()
    if failed:
        # the model's states inside each failed checkpoint's read
        inst = _event_instants(m.trace)
        more: dict[tuple[int, int], list[int]] = {}
        for pid, seq, _, tb, ta, _ in failed:
            a, b = np.searchsorted(inst, [tb, ta], side="right")
            more[(pid, seq)] = [tb, *inst[a:b].tolist(), ta]
        states: dict[tuple[int, int], list] = {}
        qs = {(pid, at) for (pid, _), ats in more.items() for at in ats}
        for pid, at, raw in m.sweep(sorted(qs, key=lambda q: q[1]), frames=False):
            states[(pid, at)] = _model_lines(raw)
        for pid, seq, _, _, _, lines in failed:
            if _sweep_matches(lines, [states[(pid, at)] for at in more[(pid, seq)]]):
                swept.add((pid, seq))
    bad = {(g[0], g[1]) for g in failed} - swept
    res.swept = len(swept)
    for pid, seq, op, tb, ta, lines in groups:
        ok = (pid, seq) not in bad
        mt, tot = res.per_pid.get(pid, (0, 0))
        res.per_pid[pid] = (mt + ok, tot + 1)
        if not ok:
            want, have = set(lines), set(answers[(pid, tb)])
            res.mismatches.append(Mismatch(pid, seq, op, tb, sorted(want - have), sorted(have - want)))
    return res
