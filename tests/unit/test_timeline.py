"""Unit tests of :class:`mmtrace.model.timeline.VmaTimeline` on literal feeds: the
rules a differential against the model rarely reaches on real traces (a
/proc snapshot VMA named later, a VMA gone and back at one instant, a vfork
child sharing its parent's tree, the instants with no address space)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmtrace.model.changes import VmaDelta
from mmtrace.model.timeline import VmaTimeline

P = 4096
A = 0x7F0000000000
RW, R = 0x3, 0x1
PTR = 0xFFFF888000001000


def _feed(tl: VmaTimeline, rows: list[dict], binds: list[tuple] = ()) -> None:
    """One frame: ``rows`` of {ts_end, pid, uid, kind, gone: [key], came: [key]}
    (key: start, end, vma, vm_flags, dev, ino); ``binds``: (before row, ts, tgid, uid, VMAs)."""
    df = pd.DataFrame({"ts_end": [r["ts_end"] for r in rows], "pid": [r["pid"] for r in rows],
                       "kind": [r.get("kind", "map") for r in rows]})
    vm = [(i, side, *k) for i, r in enumerate(rows) for side, name in ((0, "gone"), (1, "came")) for k in r.get(name, [])]
    col = list(zip(*vm)) if vm else [()] * 8
    u = lambda k: np.array(col[k], np.uint64)  # noqa: E731
    d = VmaDelta(np.array(col[0], np.int64), np.array(col[1], np.int8), u(2), u(3), u(4), u(5), u(6), u(7),
                 np.array([r["uid"] for r in rows], np.int64), np.array([r["ts_end"] for r in rows], np.int64),
                 np.array([b[:4] for b in binds], np.int64).reshape(-1, 4), [list(b[4]) for b in binds])
    tl.add(df, d)


def test_a_snapshot_vma_named_later_keeps_its_birth():
    snap = (A, A + 4 * P, 0, R, 0, 0)
    named = (A, A + 4 * P, PTR, R | 0x70, 0, 0)  # same range and perms, the kernel's pointer and flags
    tl = VmaTimeline(starts=[(10, 100)], alive=[10], end=900)
    _feed(tl, [{"ts_end": 300, "pid": 10, "uid": 1, "kind": "protect", "gone": [snap], "came": [named]}],
          binds=[(0, -(1 << 63), 10, 1, [snap])])
    lt = tl.lifetimes()
    assert lt[["vma", "born_ts", "died_ts"]].values.tolist() == [[PTR, 100, -1]]
    assert tl.counts()[["ts", "vmas"]].values.tolist() == [[100, 1], [300, 1], [900, 1]]


def test_a_vma_gone_and_back_at_one_instant_lives_on():
    k = (A, A + P, PTR, RW, 0, 0)
    tl = VmaTimeline(starts=[(10, 100)], alive=[10], end=900)
    _feed(tl, [{"ts_end": 200, "pid": 10, "uid": 1, "came": [k]},
               {"ts_end": 300, "pid": 10, "uid": 1, "kind": "unmap", "gone": [k]},
               {"ts_end": 300, "pid": 10, "uid": 1, "came": [k]}],
          binds=[(0, 50, 10, 1, [])])
    assert tl.lifetimes()[["born_ts", "died_ts"]].values.tolist() == [[200, -1]]
    # one row per instant, the last answer: 0 VMAs at the start is left out
    assert tl.counts()[["ts", "vmas"]].values.tolist() == [[200, 1], [300, 1], [900, 1]]


def test_a_vfork_child_sees_its_parents_tree_and_its_own_after_exec():
    k1, k2 = (A, A + P, PTR, RW, 0, 0), (A + 8 * P, A + 9 * P, PTR + 64, RW, 0, 0)
    mine = (A + 64 * P, A + 65 * P, PTR + 128, R, 0, 0)
    tl = VmaTimeline(starts=[(10, 100), (11, 400)], alive=[10], end=900)
    # the parent's change at 350 completes in the window after the vfork (its row comes
    # later): the bind carries the tree as the replay has it, k2 included
    _feed(tl, [{"ts_end": 200, "pid": 10, "uid": 1, "came": [k1]}],
          binds=[(0, 50, 10, 1, []), (1, 400, 11, 1, [k1, k2])])
    _feed(tl, [{"ts_end": 350, "pid": 10, "uid": 1, "came": [k2]},
               {"ts_end": 500, "pid": 11, "uid": 2, "kind": "exec_setup", "came": [mine]},
               {"ts_end": 700, "pid": 11, "uid": 2, "kind": "exit", "gone": [mine]}],
          binds=[(1, 500, 11, 2, [mine])])
    vc = tl.counts()
    assert vc[vc["pid"] == 11][["ts", "vmas"]].values.tolist() == [[400, 2], [500, 1], [700, 0]]
    lt = tl.lifetimes().sort_values(["pid", "start"])
    assert lt[lt["pid"] == 11][["start", "born_ts", "died_ts"]].values.tolist() == [
        [A, 400, 500], [A + 8 * P, 400, 500], [A + 64 * P, 500, 700]]
    assert lt[lt["pid"] == 10][["start", "born_ts", "died_ts"]].values.tolist() == [[A, 200, -1], [A + 8 * P, 350, -1]]
