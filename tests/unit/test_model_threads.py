"""What other threads see, on literal events: silent changes applied at the call's
mmap_lock record (mmtrace.model.rules.visible_instants), and checkpoints read while
other threads change the tree (mmtrace.model.verify._sweep_matches)."""

from __future__ import annotations

import numpy as np

from mmtrace.events.schema import ML_READ_LOCKED, ML_WRITE_UNLOCK
from mmtrace.model import vmas
from mmtrace.model.rules import visible_instants
from mmtrace.model.verify import _sweep_matches
from tests.conftest import frame
from tests.unit import test_model_partial as tp
from tests.unit.test_model import A, P, PID, RW, lines, store

T2 = PID + 1  # a second thread


class Trace(tp.Trace):
    def __init__(self, tw=(), sc=(), locks=()):
        super().__init__(tw, sc)
        self._ev["mmap_lock"] = frame("mmap_lock", list(locks), syscalls=tp.SYSCALLS)
        self.kinds = [k for k, v in self._ev.items() if len(v)]


def lock(ts, op, name, tid=PID):
    return dict(ts=ts, tgid=PID, tid=tid, mm=tp.tm.MM, sc=tp.SYSCALLS[name], op=op)


def call(name, enter, ts, args, ret, tid=PID):
    return dict(tp.sc(name, ts, args, ret), ts_enter=enter, tid=tid)


def test_visible_instants_first_record_of_the_thread_inside_the_call():
    tid = np.array([1, 1, 2, 3])
    te = np.array([10, 100, 10, 10])
    tx = np.array([50, 200, 50, 50])
    # thread 1: records at 20 (first call), 150 and 160 (second); thread 2: one after its exit
    got = visible_instants(tid, te, tx, np.array([1, 1, 1, 2]), np.array([160, 20, 150, 60]))
    assert got.tolist() == [20, 150, -1, -1]
    assert visible_instants(tid, te, tx, np.array([], np.int64), np.array([], np.int64)).tolist() == [-1] * 4


def _whole_vma_munmap(with_lock: bool):
    tw = [store(10, A, A + 8 * P, 0xA1)]
    s = [tp.sc("mmap", 11, [0, 8 * P, 3, 0x22], A),
         # munmap of the whole VMA: one exact-fit clear, no event; downgrade at 50, pages zapped until 400
         call("munmap", 20, 400, [A, 8 * P], 0)]
    return Trace(tw, s, [lock(50, ML_READ_LOCKED, "munmap")] if with_lock else [])


def test_whole_vma_munmap_is_gone_from_its_downgrade():
    tr = _whole_vma_munmap(True)
    assert lines(vmas(tr, PID, 49)) == [(A, A + 8 * P, "rw-p")]
    assert lines(vmas(tr, PID, 50)) == []  # what another thread sees from the downgrade on
    assert lines(vmas(tr, PID, 500)) == []


def test_whole_vma_munmap_without_lock_records_stays_until_the_exit():
    # an older trace (no mmap_lock kind): the clear has no instant but the exit
    tr = _whole_vma_munmap(False)
    assert lines(vmas(tr, PID, 100)) == [(A, A + 8 * P, "rw-p")]
    assert lines(vmas(tr, PID, 400)) == []


def test_in_place_mprotect_is_seen_from_its_unlock_and_spares_later_stores():
    tw = [store(10, A, A + 8 * P, 0xA1, flags=RW)]
    s = [tp.sc("mmap", 11, [0, 8 * P, 3, 0x22], A),
         call("mprotect", 20, 300, [A, 8 * P, 1], 0)]  # whole VMA: vm_flags_reset in place, no store
    # the other thread maps right after the unlock, before the mprotect returns
    tw += [store(70, A + 8 * P, A + 10 * P, 0xB1, flags=RW, tid=T2)]
    s += [call("mmap", 60, 80, [A + 8 * P, 2 * P, 3, 0x32], A + 8 * P, tid=T2)]
    tr = Trace(tw, s, [lock(40, ML_WRITE_UNLOCK, "mprotect"), lock(75, ML_WRITE_UNLOCK, "mmap", tid=T2)])
    assert lines(vmas(tr, PID, 39)) == [(A, A + 8 * P, "rw-p")]
    assert lines(vmas(tr, PID, 40)) == [(A, A + 8 * P, "r--p")]
    assert lines(vmas(tr, PID, 400)) == [(A, A + 8 * P, "r--p"), (A + 8 * P, A + 10 * P, "rw-p")]


def test_munmap_spares_a_store_made_after_its_downgrade():
    tw = [store(10, A, A + 8 * P, 0xA1)]
    s = [tp.sc("mmap", 11, [0, 8 * P, 3, 0x22], A), call("munmap", 20, 400, [A, 8 * P], 0),
         # while the munmap zaps its pages, the other thread maps [A, A+2P) again
         call("mmap", 90, 110, [A, 2 * P, 3, 0x32], A, tid=T2)]
    tw += [store(100, A, A + 2 * P, 0xB1, tid=T2)]
    tr = Trace(tw, s, [lock(50, ML_READ_LOCKED, "munmap"), lock(105, ML_WRITE_UNLOCK, "mmap", tid=T2)])
    assert lines(vmas(tr, PID, 60)) == []
    assert lines(vmas(tr, PID, 500)) == [(A, A + 2 * P, "rw-p")]


# -- checkpoints read while the tree changes: one VMA at a time, in address order ----------------
LO, HI = (A, A + P, "rw-p"), (A + 8 * P, A + 9 * P, "r--p")
LO2 = (A + 2 * P, A + 3 * P, "rw-p")


def test_sweep_accepts_a_read_no_single_instant_shows():
    # the low VMA is unmapped after the reader passed it, the high one mapped before it got there
    states = [[LO], [], [HI]]
    assert _sweep_matches([LO, HI], states)
    assert _sweep_matches([LO], states[:1]) and _sweep_matches([HI], states[2:])


def test_sweep_refuses_a_read_against_address_order():
    # the reader cannot see the high VMA's later state before the low VMA's earlier one
    states = [[HI], [], [LO]]
    assert not _sweep_matches([LO, HI], states)


def test_sweep_checks_the_gap_before_each_line_at_its_instant():
    # LO2 was mapped when the reader looked past LO: maps must show it
    assert not _sweep_matches([LO, HI], [[LO, LO2, HI]])
    assert _sweep_matches([LO, LO2, HI], [[LO, LO2, HI]])
    # ... or it was unmapped by then, but the gap and HI are seen at one instant
    assert _sweep_matches([LO, HI], [[LO, LO2], [LO, HI]])
