"""The unmapped-area search on a tree's pieces (first_fit_pieces, vma_count: gaps
visited from a bisection, no join) against the search as it was (the whole gap
list of the joined VMAs, tests/unmapped_area_differential.first_fit_old) on
hypothesis-made trees: touching pieces, gaps of every size, pieces of one VMA
(joined) and of one pointer that do not join, VM_GROWSDOWN neighbours; queries
with alignment, both low-limit rules, both directions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mmtrace.detect.unmapped_area import first_fit, first_fit_pieces, vma_count
from mmtrace.events.flags import VM_GROWSDOWN
from mmtrace.model.vmatree import join_pieces
from tests.unmapped_area_differential import first_fit_old

P = 4096
FLAGS = (0x73, 0x71, 0x73 | VM_GROWSDOWN)


@st.composite
def trees(draw):
    """Sorted disjoint pieces (starts, ends, vals): each piece after a gap (0..3
    pages) of 1..4 pages; a piece may continue the one before (same pointer
    and flags, touching), or reuse its pointer with other flags or after a gap."""
    n = draw(st.integers(0, 14))
    starts, ends, vals = [], [], []
    at = draw(st.integers(0, 3)) * P
    ptr = 0x1000
    for _ in range(n):
        gap = draw(st.integers(0, 3)) * P
        size = draw(st.integers(1, 4)) * P
        how = draw(st.sampled_from(["new", "new", "continue", "same_ptr", "zero_ptr"]))
        s = at + gap
        if how == "continue" and vals and gap == 0:
            v = vals[-1]
        elif how == "same_ptr" and vals:
            v = (vals[-1][0], draw(st.sampled_from(FLAGS)))
        elif how == "zero_ptr":
            v = (0, draw(st.sampled_from(FLAGS)))
        else:
            ptr += 0x100
            v = (ptr, draw(st.sampled_from(FLAGS)))
        starts.append(s)
        ends.append(s + size)
        vals.append(v)
        at = s + size
    return starts, ends, vals


queries = st.fixed_dictionaries({
    "length": st.integers(1, 6).map(lambda x: x * P),
    "low": st.integers(0, 8).map(lambda x: x * P),
    "high": st.integers(0, 80).map(lambda x: x * P),
    "align_mask": st.sampled_from([0, P, 3 * P]),
    "align_offset": st.sampled_from([0, P, 2 * P]),
    "topdown": st.booleans(),
    "clamp_low": st.booleans(),
    "guard": st.sampled_from([0, P, 2 * P]),
})


@settings(max_examples=3000, deadline=None)
@given(tree=trees(), q=queries)
def test_pieces_search_is_the_joined_one(tree, q):
    starts, ends, vals = tree
    vmas = [(s, e, v[1]) for s, e, v in join_pieces(starts, ends, vals)]
    kw = dict(mmap_min_addr=2 * P, guard=q["guard"], clamp_low=q["clamp_low"])
    args = (q["length"], q["low"], q["high"], q["align_mask"], q["align_offset"], q["topdown"])
    want = first_fit_old(vmas, *args, **kw)
    assert first_fit_pieces(starts, ends, vals, *args, **kw) == want
    assert first_fit(vmas, *args, **kw) == want
    assert vma_count(starts, ends, vals) == len(vmas)


def test_a_long_run_of_touching_pieces_is_skipped_whole():
    # 5,000 VMAs back to back and one hole below them: both directions find it
    n = 5000
    starts = [(10 + i) * P for i in range(n)]
    ends = [s + P for s in starts]
    vals = [(0x1000 + i, 0x73) for i in range(n)]
    top = dict(mmap_min_addr=P, guard=0)
    assert first_fit_pieces(starts, ends, vals, 2 * P, 0, ends[-1], 0, 0, True, **top) == 8 * P
    assert first_fit_pieces(starts, ends, vals, 2 * P, 0, 1 << 47, 0, 0, False, **top) == P
    assert first_fit_pieces(starts, ends, vals, 20 * P, 0, 1 << 47, 0, 0, False, **top) == ends[-1]
    assert vma_count(starts, ends, vals) == n
