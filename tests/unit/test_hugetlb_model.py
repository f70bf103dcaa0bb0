"""The hugetlb model's rules for concurrent evidence, on literal inputs (no root)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from mmtrace.detect import hugetlb as H

HP = 2 << 20


def test_another_thread_may_see_any_prefix_of_a_calls_changes():
    # tid 7 in a call from ts 50 to 200: the model applied two steps at 60
    # (cgroup charge, then hstate) and has one to come at 150
    rows = [{"ts": 100}]
    deltas = [(60, 7, 0, 1), (60, 7, -1, 0), (150, 7, 0, -1)]
    H._inflight(rows, {0: [(50, 200, 7)]}, deltas)
    assert rows[0]["inflight"] == sorted({(1, -1), (1, 0), (0, 0), (0, -1)})


def test_a_failed_call_adds_its_transient_state():
    rows = [{"ts": 100}]
    H._inflight(rows, {0: [(50, 200, 7)]}, [], {(7, 50): [(0, 3)]})
    assert rows[0]["inflight"] == [(0, 0), (0, 3)]


def _trace(tracepoints):
    return SimpleNamespace(metadata={"probe_plan": {"tracepoints": tracepoints}})


def test_fault_outcome_is_the_threads_next_sample():
    hs = pd.DataFrame({"ts": [10, 11, 12, 20, 21], "tid": [1, 1, 2, 2, 2], "cause": [2, 5, 2, 1, 4]})
    assert H._fault_outcomes(_trace(["signal:signal_generate"]), hs) == {(1, 10): True, (2, 12): False}
    assert H._fault_outcomes(_trace(["exceptions:page_fault_user"]), hs) is None


def test_cow_fault_holds_the_old_folio_until_it_returns():
    """hugetlb_wp(): the owner copies a folio its child shares; the child
    unmaps the old one while the copy is in progress: it is freed when the
    owner's fault returns, not at the child's unmap."""
    st = H._Model(HP)
    owner = H._Vma(0, HP, 0x3, (0, 0, 0), 0)
    st.reserve(owner)
    child = H._Vma(0, HP, 0x3, (0, 0, 0), 0)
    st.vmas[1], st.vmas[2] = [owner], [child]
    st.fault(1, 0, True, free=10, resv=1)  # the owner's first fault consumes its reservation
    f = st.pte[(1, 0)]
    f.maps.add((2, 0))
    st.pte[(2, 0)] = f  # copy_hugetlb_page_range() at fork
    f.charged = True  # so that its free shows in the cgroup
    cg = st.cg
    st.fault_tid = 1
    st.fault(1, 0, True, free=10, resv=0)  # the owner's COW: cow_from_owner copy, charged
    assert st.cg == cg + 1 and st.pte[(1, 0)] is not f
    st.zap(2, child, 0, HP, surplus=0)  # the child unmaps the old folio meanwhile
    assert st.cg == cg + 1  # still held by the owner's fault
    st.fault_end(1)
    assert st.cg == cg  # freed as the fault returns: its charge goes


def _shared_after_fork():
    """An owner (tree 1, pid 10) whose faulted page its fork child (tree 2, pid 20) maps too."""
    st = H._Model(HP)
    owner = H._Vma(0, HP, 0x3, (0, 0, 0), 0)
    st.reserve(owner)
    child = H._Vma(0, HP, 0x3, (0, 0, 0), 0)
    st.vmas[1], st.vmas[2] = [owner], [child]
    st.tree_of_pid.update({10: 1, 20: 2})
    st.fault(1, 0, True, free=10, resv=1)
    f = st.pte[(1, 0)]
    f.maps.add((2, 0))
    st.pte[(2, 0)] = f
    return st


def _fault(st, order, tid=10):
    st.fault_end(tid)
    st.fault_tid = tid
    st.fault(st.tree_of_pid[tid], 0, True, free=10, resv=0, order=order)


def test_cow_fault_during_the_other_mappings_unmap_follows_both_orders():
    """hugetlb_wp() copies a folio mapped twice and reuses one mapped once:
    when the child (pid 20) is in a call (ts 100-300) while the owner's
    write fault (ts 150-250) is handled, both may have happened first.  The
    model forks; the counter at the next quiet sample decides."""
    st = _shared_after_fork()
    cg0 = st.cg
    busy = H._Busy([(100, 300, 20), (150, 250, 10)])  # the child's munmap, the owner's fault
    br = H._Branches(st, busy)
    pl = (10, 0, True, 10, 0, False, 10, 250)
    br.apply(151, "fault", pl, 10, lambda b, order: _fault(b, order))
    assert len(br) == 2
    copied, reused = br[0], br[1]
    assert copied.cg == cg0 + 1 and reused.cg == cg0  # the copy is charged (cow_from_owner), reuse is not
    assert copied.pte[(1, 0)] is not copied.pte[(2, 0)] and reused.pte[(1, 0)] is reused.pte[(2, 0)]
    # the kernel reused: a quiet sample with the cgroup at cg0 keeps only that branch
    br.keep(lambda b: b.cg == cg0)
    assert len(br) == 1 and br[0] is reused
    # a refuting sample that no branch explains keeps them all: the check reports it
    br2 = H._Branches(_shared_after_fork(), busy)
    br2.apply(151, "fault", pl, 10, lambda b, order: _fault(b, order))
    br2.keep(lambda b: False)
    assert len(br2) == 2


def test_cow_fault_with_nothing_concurrent_does_not_fork():
    st = _shared_after_fork()
    busy = H._Busy([(400, 500, 20), (100, 300, (20, HP))])  # its munmap after; a fault elsewhere
    br = H._Branches(st, busy)
    br.apply(151, "fault", (10, 0, True, 10, 0, False, 10, 250), 10, lambda b, order: _fault(b, order))
    assert len(br) == 1 and br[0].pte[(1, 0)] is not br[0].pte[(2, 0)]


def test_equal_branches_merge():
    st = _shared_after_fork()
    br = H._Branches(st, H._Busy([]))
    import copy

    br.models.append(copy.deepcopy(st))
    br.keep(lambda b: True)
    assert len(br) == 1


def test_cow_faults_of_both_processes_on_one_folio_follow_both_orders():
    """Both take hugetlb_fault_mutex (same mapping and index): the kernel
    serializes them in an order their start times do not show."""
    busy = H._Busy([(140, 260, (20, 0))])  # the child's own fault on page 0
    br = H._Branches(_shared_after_fork(), busy)
    br.apply(151, "fault", (10, 0, True, 10, 0, False, 10, 250), 10, lambda b, order: _fault(b, order))
    assert len(br) == 2
    # a call of the child that zaps nothing (mprotect is not _ZAPPING) leaves one order
    sc = H._Busy([])
    assert not sc.during(20, 0, 151, 250)


def test_reuse_branch_goes_when_the_other_mapping_outlives_what_was_in_progress():
    """The reuse order assumed the child's call (ts 100-300) dropped its mapping
    first: once that call is over with the mapping still there, it is impossible."""
    busy = H._Busy([(100, 300, 20)])
    br = H._Branches(_shared_after_fork(), busy)
    br.apply(151, "fault", (10, 0, True, 10, 0, False, 10, 250), 10, lambda b, order: _fault(b, order))
    assert len(br) == 2
    br.apply(200, "madvise", (), 20, lambda b, order: None)
    assert len(br) == 2  # still in progress
    br.apply(301, "madvise", (), 20, lambda b, order: None)  # the call changed nothing of page 0
    assert len(br) == 1 and br[0].pte[(1, 0)] is not br[0].pte[(2, 0)]  # only the copy is left
    # when the call did unmap it, both orders stay possible
    br = H._Branches(_shared_after_fork(), busy)
    br.apply(151, "fault", (10, 0, True, 10, 0, False, 10, 250), 10, lambda b, order: _fault(b, order))
    br.apply(299, "change", (), 20, lambda b, order: b._drop(2, 0))
    br.apply(301, "madvise", (), 20, lambda b, order: None)
    assert len(br) == 2


def test_owner_cow_on_a_dry_pool_follows_copy_and_unmap_ref_private():
    """The owner's COW starts with free == resv: if no page is freed before
    alloc_hugetlb_folio() looks, unmap_ref_private() takes the page from the
    child (HPAGE_RESV_UNMAPPED); if one is, the owner copies.  The child's
    later fault there returning without SIGBUS refutes the first."""
    st = _shared_after_fork()
    cg0 = st.cg
    br = H._Branches(st, H._Busy([]))

    def owner_cow(b, order):
        b.fault_tid = 10
        b.fault(1, 0, True, free=3, resv=3, failed=False, order=order)

    br.apply(151, "fault", (10, 0, True, 3, 3, False, 10, 250), 10, owner_cow)
    assert len(br) == 2
    took, copied = br[0], br[1]
    assert took.vmas[2][0].unmapped and took.cg == cg0
    assert not copied.vmas[2][0].unmapped and copied.cg == cg0 + 1

    def child_fault(b, order):
        b.fault_tid = 20
        b.fault(2, 0, True, free=5, resv=3, failed=False, order=order)

    br.apply(400, "fault", (20, 0, True, 5, 3, False, 20, 450), 20, child_fault)
    br.apply(500, "madvise", (), 20, lambda b, order: None)
    assert len(br) == 1 and br[0] is copied and br[0].cg == cg0 + 1  # the child reuses the old folio


def test_a_sample_read_late_sees_what_another_cpu_did_meanwhile():
    """The counters are read after the sample's stamp, up to ts_read
    (collectors/huge.bpf.c): another thread's fault that began in between
    (and charged the cgroup before it found no page) is in progress at
    that sample, and its transient +1 explains what the sample read."""
    hs = pd.DataFrame({"ts": [100, 110, 140], "ts_read": [130, 112, 141], "tid": [1, 2, 2], "cause": [4, 2, 5]})
    ends = H._read_ends(None, hs)
    assert list(ends) == [130, 112, 141]
    # tid 2's fault, from its sample to its SIGBUS
    spans = np.array([[110, 140, 2, 2, H._SPAN_FAULT, 0]], dtype=np.int64)
    w = H._windows(None, hs, spans, ends)
    assert w == {0: [(110, 140, 2, H._SPAN_FAULT)]}
    assert H._windows(None, hs, spans) == {}  # at its stamp alone, nothing was in progress
    rows = [{"ts": 100}]
    H._inflight(rows, w, [], {(2, 110): [(0, 1)]})
    assert rows[0]["inflight"] == [(0, 0), (0, 1)]


def test_without_ts_read_the_read_ends_by_the_threads_next_stamp():
    hs = pd.DataFrame({"ts": [100, 110, 150], "tid": [1, 2, 1], "cause": [4, 2, 1]})
    assert list(H._read_ends(None, hs)) == [150, 110, 150]


def _dry_owner_cow_orders():
    """Two orders after the owner's COW on a dry pool: unmap_ref_private (cg
    as before) and the copy (cg + 1), as in the test above."""
    st = _shared_after_fork()
    br = H._Branches(st, H._Busy([]), {(30, 150): [(0, 1), (-1, 0)]})

    def owner_cow(b, order):
        b.fault_tid = 10
        b.fault(1, 0, True, free=3, resv=3, failed=False, order=order)

    br.apply(151, "fault", (10, 0, True, 3, 3, False, 10, 250), 10, owner_cow)
    assert len(br) == 2
    return br, st.cg - 1  # the cgroup's count before the COW


def test_a_busy_sample_decides_the_orders_once_its_spans_have_ended():
    """A sample read while tid 20 had an mprotect (changes nothing) in
    progress: once that is over, an order whose value no prefix of its
    changes brings to the kernel's is refuted (_Branches.defer/settle)."""
    br, cg0 = _dry_owner_cow_orders()
    agrees = lambda b, at, adj: any(at[1] + y == cg0 + 2 for x, y in adj)  # noqa: E731 (the kernel: the copy)
    br.defer(7, 260, [(255, 280, 20, H._SPAN_CALL)], agrees)
    br.settle(270)
    assert len(br) == 2  # the call is still in progress
    br.settle(281)
    assert len(br) == 1 and br[0].cg == cg0 + 2 and not br.pending


def test_a_fault_in_progress_may_show_the_charge_it_backs_out_of():
    """hugetlb_no_page() backout / hugetlb_wp() out_release_all: a fault may
    hold the charge of a folio it then frees, and return without SIGBUS:
    an order one page short is not refuted by a sample read meanwhile.  A
    fault's changes are known from its start: no need to wait for its end."""
    br, cg0 = _dry_owner_cow_orders()
    agrees = lambda b, at, adj: any(at[1] + y == cg0 + 2 for x, y in adj)  # noqa: E731
    br.defer(7, 260, [(150, 1 << 62, 30, H._SPAN_FAULT)], agrees)  # tid 30's fault, its end unknown
    br.settle(261)
    assert len(br) == 2 and not br.pending


def test_an_exit_is_in_progress_from_sched_process_exit_not_from_the_last_sample():
    """A parent waits (wait4, not followed) long after its last sample, then
    exits: its exit span starts at sched_process_exit (the event still names
    the mm: exit_mm() has not run), not at that last sample."""
    empty = pd.DataFrame({"ts_enter": [], "ts": [], "tid": [], "tgid": [], "syscall": []})
    proc = pd.DataFrame({"ts": [900], "tid": [5], "tgid": [5], "what": ["exit"], "mm": [0xFFFF1]})
    tr = SimpleNamespace(raw_events=lambda kind: proc if kind == "proc" else empty)
    hs = pd.DataFrame({"ts": [100, 950], "tid": [5, 5], "tgid": [5, 5], "cause": [1, 3], "address": [0, 0]})
    sp = H._spans(tr, hs, {}, HP)
    assert sp.tolist() == [[900, 950, 5, 5, H._SPAN_EXIT, 0]]
    proc["mm"] = 0  # an event after exit_mm(): the teardown was before it
    assert H._spans(tr, hs, {}, HP).tolist() == [[100, 950, 5, 5, H._SPAN_EXIT, 0]]


def test_a_fault_sample_torn_by_another_allocation_may_hide_a_dry_pool():
    """The collector reads free_huge_pages, then resv_huge_pages, without
    hugetlb_lock; alloc_hugetlb_folio() of another thread (tid 30, a fault
    in progress) decrements free (dequeue_hugetlb_folio_vma()) before resv:
    a read between shows free 5, resv 4 where the hstate went from 5/5 to
    4/4, never with an unreserved page.  The owner's COW that starts on such
    a sample follows unmap_ref_private() too; one read with nothing else in
    progress does not."""
    hs = pd.DataFrame({"ts": [100, 151], "free_huge_pages": [5, 5], "resv_huge_pages": [5, 4]})
    windows = {1: [(120, 400, 30, H._SPAN_FAULT)]}
    assert H._pool_dry(hs, windows)(150, 250)  # the fault's own sample, torn
    assert not H._pool_dry(hs)(150, 250)  # the same values read with nothing in progress: a page

    def orders(dry):
        st = _shared_after_fork()
        cg0 = st.cg
        br = H._Branches(st, H._Busy([]), dry=dry)

        def owner_cow(b, order):
            b.fault_tid = 10
            b.fault(1, 0, True, free=5, resv=4, failed=False, order=order)

        br.apply(152, "fault", (10, 0, True, 5, 4, False, 10, 250), 10, owner_cow)
        return sorted((b.cg - cg0, b.vmas[2][0].unmapped) for b in br)

    assert orders(H._pool_dry(hs, windows)) == [(0, True), (1, False)]  # unmap_ref_private, or the copy
    assert orders(H._pool_dry(hs)) == [(1, False)]


def _segment(start=0x7F0000000000, pages=4, ino=77):
    return H._Vma(start, start + pages * HP, H.VM_HUGETLB | H.VM_MAYSHARE, (9, ino, 0), 0)


def test_a_segment_reserved_at_its_unseen_shmget_is_taken_when_the_counters_show_it():
    # R8: the kernel reserved the segment's 4 pages at shmget (not traced); the
    # entry sample of its shmat shows them, and the shmat itself reserves nothing
    st = H._Model(HP)
    v = _segment()
    st.unseen_shmget(v)
    assert st.optional and st.resv == st.cg == 0
    H._take_evictions(st, 0, 4, 4)  # cgroup 4 reserved pages, hstate resv 4
    assert not st.optional and (st.resv, st.cg) == (4, 4)
    st.reserve(_segment())  # shmat: region_chg finds every page reserved
    assert (st.resv, st.cg) == (4, 4)


def test_a_segment_made_elsewhere_stays_optional_and_its_shmat_reserves_nothing():
    st = H._Model(HP)
    st.unseen_shmget(_segment())
    H._take_evictions(st, 0, 0, 0)  # nothing shows: made before the trace, or by another cgroup
    st.reserve(_segment())
    assert (st.resv, st.cg) == (0, 0) and st.optional


def test_eviction_and_a_new_segment_between_samples_are_told_by_the_global_counter():
    # shmdt + IPC_RMID of one segment whose 4 pages were faulted (in its page
    # cache: its eviction uncharges the cgroup, the hstate keeps 0), then shmget
    # of another (+4 both): between two samples the cgroup's count stays 4 and
    # only the hstate's reservations (4, the model 0) tell that both happened
    st = H._Model(HP)
    old = _segment(ino=1)
    st.reserve(old)  # a hugetlbfs file mapped shared: reserved at mmap (+4, +4)
    for fp in st.region[(9, 1)]:
        st.cache[(9, 1)][fp] = H._Folio(anon=False, cached=(9, 1, fp))
    st.resv -= 4  # its faults consumed the reservations
    st.remove_file((9, 1))
    st.unseen_shmget(_segment(start=0x7E0000000000, ino=2))
    assert st.eviction((9, 1)) == (0, -4) and (st.resv, st.cg) == (0, 4)
    H._take_evictions(st, 0, 4, 0)  # the cgroup agrees and the hstate too: nothing to take
    assert len(st.optional) == 2
    H._take_evictions(st, 0, 4, 4)
    assert not st.optional and (st.resv, st.cg) == (4, 4)
