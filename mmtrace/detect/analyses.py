"""Every analysis as ``rule(trace, opts) -> DataFrame``, with what it needs from the trace.

:data:`ANALYSES` names each one with the event kinds it reads and the probe
features it needs, so a caller (``mmtrace report``) can say which it skipped
and why (:func:`skipped`) instead of showing an empty table as if nothing
happened: a trace without hugetlb samples, a kernel without the
``mmap:vm_unmapped_area`` tracepoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Analysis", "ANALYSES", "run", "skipped"]


@dataclass(frozen=True)
class Analysis:
    """One rule: ``fn(trace, opts) -> DataFrame``; ``kinds``: event kinds it
    needs recorded (all of them); ``tracepoints``: probes that must have been
    attached (``probe_plan.tracepoints``); ``features``: ``probe_plan.features``
    flags that must be true."""

    name: str
    fn: Callable[..., pd.DataFrame]
    kinds: tuple[str, ...] = ()
    tracepoints: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    doc: str = ""
    opts: dict = field(default_factory=dict)

    def missing(self, trace) -> str | None:
        """Why this analysis cannot run on ``trace`` (one sentence), or None if it can."""
        plan = (getattr(trace, "metadata", {}) or {}).get("probe_plan") or {}
        tps = plan.get("tracepoints")
        for tp in self.tracepoints:
            if tps is not None and tp not in tps:
                return f"the recording kernel has no {tp} tracepoint (not attached)"
        feats = plan.get("features") or {}
        for f in self.features:
            if not feats.get(f):
                return f"probe feature {f!r} was not available when recording"
        kinds = set(getattr(trace, "kinds", ()) or ())
        for k in self.kinds:
            if k not in kinds:
                return f"the trace has no {k!r} events"
        return None


def _changes(trace, opts):
    return trace.changes(opts.get("pid"))


def _splits(trace, opts):
    return trace.splits()


def _merges(trace, opts):
    return trace.merges()


def _hugetlb(trace, opts):
    return trace.hugetlb()


def _unmapped_area(trace, opts):
    return trace.unmapped_area_check()


def _processes(trace, opts):
    return trace.processes(counts=opts.get("counts", True))


ANALYSES: dict[str, Analysis] = {a.name: a for a in (
    Analysis("processes", _processes, doc="one row per process, with split/merge counts"),
    Analysis("changes", _changes, kinds=("tree_write",), doc="every VMA tree change by cause"),
    Analysis("splits", _splits, kinds=("tree_write",), doc="changes that split VMAs"),
    Analysis("merges", _merges, kinds=("tree_write",), doc="changes that merged VMAs"),
    Analysis("hugetlb", _hugetlb, kinds=("hugetlb",), features=("hugetlb",),
             doc="hugetlb reservations modeled vs the kernel's counters"),
    Analysis("unmapped_area", _unmapped_area, kinds=("unmapped_area",), tracepoints=("mmap:vm_unmapped_area",),
             doc="each vm_unmapped_area against a first-fit search of the rebuilt tree"),
)}


def run(trace, name: str, opts: dict | None = None) -> pd.DataFrame:
    """Analysis ``name`` of ``trace`` (an ``mmtrace.Trace``); raises ValueError with the
    reason when it cannot run (see :meth:`Analysis.missing`)."""
    a = ANALYSES[name]
    why = a.missing(trace)
    if why is not None:
        raise ValueError(f"{name}: skipped: {why}")
    return a.fn(trace, {**a.opts, **(opts or {})})


def skipped(trace) -> dict[str, str]:
    """{analysis name: why it cannot run on ``trace``} for those that cannot."""
    out = {}
    for name, a in ANALYSES.items():
        why = a.missing(trace)
        if why is not None:
            out[name] = why
    return out
