"""The rebuilt VMA trees checked against /proc/PID/maps checkpoints (``mmtrace verify``).

A checkpoint (see :mod:`mmtrace.events.procmaps`) is /proc/self/maps read
between ``t_before`` and ``t_after`` by the process itself, which changes no
mapping in between.  Every tree change of the syscalls before it has an event
with ts < t_before (a syscall's exit record is stamped before it returns), so
the model at ``t_before`` must equal it.  When it does not, the model at
``t_after`` is tried too (a change by another task sharing the mm, seen by
the read, would land in between): a checkpoint matches when either equals it,
exactly on (start, end, perms), ``[vsyscall]`` ignored (it is not in the tree).
"""

from __future__ import annotations

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
    for pid, seq, op, tb, ta, lines in groups:
        got = answers[(pid, tb)]
        ok = got == lines
        if not ok:
            got2 = answers[(pid, ta)]
            ok = got2 == lines
        mt, tot = res.per_pid.get(pid, (0, 0))
        res.per_pid[pid] = (mt + ok, tot + 1)
        if not ok:
            want, have = set(lines), set(got)
            res.mismatches.append(Mismatch(pid, seq, op, tb, sorted(want - have), sorted(have - want)))
    return res
