"""Detection rules on literal inputs, and the SYNTHETIC failed-__split_vma trace (no root)."""

from __future__ import annotations

import pytest

import mmtrace
from mmtrace.detect import first_fit, split_merge_points
from mmtrace.testing.synthetic import SYNTHETIC_NOTE, write_failed_split_trace
from mmtrace.events.flags import VM_GROWSDOWN

P = 4096
RW = 0x3


def v(start, end, ptr=1, flags=RW):
    return (start * P, end * P, ptr, flags)


def test_mprotect_middle_is_two_splits():
    sp, mg, nr = split_merge_points([v(0, 16)], [v(0, 6), v(6, 10, 2, 1), v(10, 16, 3)])
    assert sp == [6 * P, 10 * P] and mg == [] and nr == []


def test_merge_back_is_two_merges():
    sp, mg, nr = split_merge_points([v(0, 6), v(6, 10, 2, 1), v(10, 16, 3)], [v(0, 16)])
    assert sp == [] and mg == [6 * P, 10 * P]


def test_hole_punch_is_two_splits():
    sp, mg, _ = split_merge_points([v(0, 16)], [v(0, 2), v(4, 16, 2)])
    assert sp == [2 * P, 4 * P] and mg == []


def test_tail_unmap_is_one_split():
    sp, _, _ = split_merge_points([v(0, 16)], [v(0, 12)])
    assert sp == [12 * P]


def test_new_range_merge_only_for_new_ground():
    before, after = [v(0, 4, 7)], [v(0, 8, 7)]
    assert split_merge_points(before, after, new_ranges=True)[2] == [4 * P]
    assert split_merge_points(before, after, new_ranges=False)[2] == []


def test_first_fit_topdown_and_bottomup():
    vmas = [(0x10000, 0x20000, RW), (0x30000, 0x40000, RW), (0x7000_0000, 0x7000_1000, RW)]
    assert first_fit(vmas, 0x1000, 0x1000, 0x7000_0000, 0, 0, True) == 0x7000_0000 - 0x1000
    assert first_fit(vmas, 0x1000, 0x1000, 0x7000_0000, 0, 0, False, mmap_min_addr=4096) == 0x1000
    assert first_fit(vmas, 0x1000, 0x1000, 0x7000_0000, 0, 0, False, mmap_min_addr=65536) == 0x20000
    assert first_fit(vmas, 0x10000, 0x10000, 0x40000, 0, 0, True) == 0x20000
    assert first_fit(vmas, 0x20000, 0x10000, 0x40000, 0, 0, True) is None


def test_first_fit_alignment():
    vmas = [(0x7000_0000, 0x7000_1000, RW)]
    got = first_fit(vmas, 0x1000, 0x1000, 0x7000_0000, 0x1FFFFF, 0, True)
    assert got % 0x200000 == 0 and got + 0x1000 <= 0x7000_0000


def test_first_fit_keeps_stack_guard_gap():
    guard = 256 * P
    stack = (0x7FFF_0000_0000, 0x7FFF_0002_1000, RW | VM_GROWSDOWN)
    # nothing free above the stack below high_limit: the gap below it, minus the guard
    got = first_fit([stack], 0x1000, 0x1000, stack[1], 0, 0, True, guard=guard)
    assert got == stack[0] - guard - 0x1000


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """SYNTHETIC: the failing __split_vma path, built in the trace schema (not recorded)."""
    path = write_failed_split_trace(tmp_path_factory.mktemp("synthetic") / "failed-split-vma.trace")
    return mmtrace.open(path)


def test_synthetic_is_labelled(synthetic):
    assert synthetic.metadata["synthetic"] == SYNTHETIC_NOTE


def test_synthetic_failed_split_is_flagged(synthetic):
    a = synthetic.anomalies()
    assert set(a["kind"]) == {"model_kernel_disagree", "kernel_counter_underflow", "negative_reservation"}
    assert (a["severity"] == "error").all()
    first = a.iloc[0]
    assert first["kind"] == "model_kernel_disagree" and first["pid"] == 4242
    assert "mprotect(" in first["explanation"] and "-ENOMEM" in first["explanation"]
    assert "__split_vma" in first["explanation"] and "hugetlb_vm_op_close" in first["explanation"]
    assert "changed by -2" in first["explanation"]
    under = a[a["kind"] == "kernel_counter_underflow"].iloc[0]
    assert "= -2 as signed" in under["explanation"]
    neg = a[a["kind"] == "negative_reservation"].iloc[0]
    assert "-2, below zero" in neg["explanation"]


def test_synthetic_model_sees_no_vma_change_at_the_failed_call(synthetic):
    h = synthetic.hugetlb()
    row = h[h["syscall"] == "mprotect"].iloc[0]
    assert row["ret"] == -12 and row["model_delta"] == 0 and row["kernel_delta"] == -2
    assert list(h["model_resv"]) == [4, 4, 0]
    assert synthetic.splits().empty  # the split failed: the tree never changed
