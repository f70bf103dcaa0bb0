"""The hugetlb model's rules for concurrent evidence, on literal inputs (no root)."""

from __future__ import annotations

from types import SimpleNamespace

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
