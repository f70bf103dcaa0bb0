"""The VMA counts and lifetimes fed by the changes pass against the model's replay.

Issue 10's differential test ran the old path (``ReportData._sweep_replay``:
a second replay, ``Model.sweep`` queried at every change's ``ts_end``, each
process's start and the end) against the :class:`mmtrace.model.timeline.VmaTimeline`
fed by the changes pass, and required identical ``vma_counts`` and ``vmas``
frames on the golden traces (windows None, 97, 5) and on live recordings
(commit "report: vma_counts and vmas from the changes pass ..."); the old
path was then deleted.  What stays: :func:`assert_timeline_is_the_model`
requires the same frames from the streamed report (:func:`mmtrace.report.write_report`)
and from :class:`ReportData` used alone, a row at each instant the old
path queried (made here from the trace) unless the process had no VMAs
then, and, at sampled instants, the count, the mapped bytes and the VMAs
alive in ``vmas`` to be what a fresh ``Model.sweep`` query of that process
at that instant answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import mmtrace
from mmtrace.model import model_of
from mmtrace.report import ReportData, write_report


def _sorted(vc: pd.DataFrame, lt: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (vc.sort_values(["ts", "pid"], kind="stable", ignore_index=True),
            lt.sort_values(["pid", "start", "born_ts", "end"], kind="stable", ignore_index=True))


def _window(window: int | None):
    import mmtrace.model.model as mm

    saved = mm.DEFAULT_CHECKPOINT_EVERY
    if window is not None:
        mm.DEFAULT_CHECKPOINT_EVERY = window
    return lambda: setattr(mm, "DEFAULT_CHECKPOINT_EVERY", saved)


def _instants(rd) -> pd.DataFrame:
    """(pid, ts) of every instant ``vma_counts`` answers, made here from the trace:
    each process's start, the ``ts_end`` of each of its changes, the end while alive."""
    ch = rd.change_index()
    p = rd.trace.processes(counts=False)
    end = rd.t1 or (int(ch["ts_end"].max()) if len(ch) else 0)
    parts = [ch[["pid", "ts_end"]].rename(columns={"ts_end": "ts"}),
             p.loc[p["start_ts"].notna(), ["pid", "start_ts"]].rename(columns={"start_ts": "ts"})]
    if end:
        parts.append(p.loc[p["exit_ts"].isna(), ["pid"]].assign(ts=end))
    q = pd.concat(parts, ignore_index=True).astype(np.int64).drop_duplicates()
    return q.sort_values(["ts", "pid"], ignore_index=True)


def _samples(q: pd.DataFrame, n: int) -> list[tuple[int, int]]:
    """(pid, ts) of about ``n`` rows spread over ``q``, and each process's first and last."""
    pick = set(np.linspace(0, len(q) - 1, min(n, len(q))).astype(int).tolist()) if len(q) else set()
    for ix in q.groupby("pid").indices.values():
        pick.update((int(ix[0]), int(ix[-1])))
    rows = q.iloc[sorted(pick)]
    return list(zip(rows["pid"].tolist(), rows["ts"].tolist()))


def _alive(lt: pd.DataFrame, pid: int, at: int) -> pd.DataFrame:
    """The VMAs of ``pid`` shown at ``at`` by the lifetimes: born at or before, not died by then."""
    d = lt[(lt["pid"] == pid) & (lt["born_ts"] <= at) & ((lt["died_ts"] < 0) | (lt["died_ts"] > at))]
    return d.sort_values("start", ignore_index=True)


def assert_timeline_is_the_model(path, tmp: Path, *, window: int | None = None, samples: int = 150) -> int:
    """Both ways on the trace at ``path`` (``window``: tree writes per window of the
    changes pass) and the model at sampled instants; returns the frames' rows compared
    (counts + lifetimes)."""
    restore = _window(window)
    try:
        res = write_report(mmtrace.open(path), tmp / "report")
        streamed = _sorted(res.data.vma_counts(), res.data.vmas())
        alone_rd = ReportData(mmtrace.open(path))
        alone = _sorted(alone_rd.vma_counts(), alone_rd.vmas())
    finally:
        restore()
    assert res.errors == {}, res.errors
    for name, a, b in zip(("vma_counts", "vmas"), streamed, alone):
        pd.testing.assert_frame_equal(b, a, check_dtype=True, obj=f"{name} (alone vs streamed, window={window})")
    vc, lt = streamed
    q = _instants(res.data)
    # a row at every instant but those with no address space (a process's last kept)
    last = q.groupby("pid")["ts"].max()
    assert set(zip(vc["pid"], vc["ts"])) <= set(zip(q["pid"], q["ts"]))
    assert set(zip(last.index, last)) <= set(zip(vc["pid"], vc["ts"]))
    want = vc.set_index(["pid", "ts"])
    for pid, at, m in model_of(mmtrace.open(path)).sweep(_samples(q, samples)):
        if (pid, at) not in want.index:
            assert len(m) == 0, (pid, at, len(m))
            continue
        row = want.loc[(pid, at)]
        assert (int(row["vmas"]), int(row["mapped"])) == (len(m), int((m["end"] - m["start"]).sum())), (pid, at)
        got = _alive(lt, pid, at)
        # a VMA first known from a /proc snapshot has pointer 0 in the model until
        # the trace names it; its lifetime row carries the pointer it got then
        named = {(int(s), int(e), p): int(v) for s, e, p, v in zip(got["start"], got["end"], got["perms"], got["vma"])}
        mv = [int(v) or named.get((int(s), int(e), p), 0) for s, e, p, v in zip(m["start"], m["end"], m["perms"], m["vma"])]
        cols = ["start", "end", "perms", "inode", "path"]
        assert got[cols].to_dict("list") == m[cols].to_dict("list"), (pid, at)
        assert [int(v) for v in got["vma"]] == mv, (pid, at)
        # the flags a snapshot does not show (only its perms) are known once named
        known = (m["vma"].to_numpy(np.uint64) != 0)
        assert (got["vm_flags"].to_numpy(np.uint64)[known] == m["vm_flags"].to_numpy(np.uint64)[known]).all(), (pid, at)
    # the twin rule: a /proc snapshot VMA (pointer 0) the trace names with its
    # pointer lives on as that VMA, it does not die and come again
    snap = lt[(lt["vma"] == 0) & (lt["died_ts"] >= 0)]
    twin = snap.merge(lt[lt["vma"] != 0], left_on=["pid", "start", "end", "perms", "died_ts"],
                      right_on=["pid", "start", "end", "perms", "born_ts"])
    assert len(twin) == 0, twin.head()
    return len(vc) + len(lt)
