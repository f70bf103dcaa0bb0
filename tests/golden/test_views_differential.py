"""Differential: the report's views that were made lighter give what the code they
replaced gave (kept here verbatim): the brk ends (views._brk_of, read part by part,
not from the whole syscall table) and the region names (views.region_names, named per
group of lifetimes, not per lifetime)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmtrace
from mmtrace.events.flags import VM_GROWSDOWN, VM_HUGETLB
from mmtrace.report import views
from mmtrace.report.frames import report_data
from tests.golden.make_golden import DATA

pytestmark = pytest.mark.golden


def old_brk_of(trace) -> dict[int, list[int]]:
    """views._brk_of before it read only the brk rows (the whole table, then a filter)."""
    sc = trace.raw_events("syscall")
    if not len(sc):
        return {}
    b = sc[(sc["syscall"] == "brk") & (sc["ret"] > 0)]
    return {int(p): g.astype(np.int64).tolist() for p, g in b.groupby("tgid", observed=True)["ret"]}


@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_brk_ends_are_the_whole_tables(name):
    t = mmtrace.open(DATA / name)
    new = views._brk_of(report_data(t))
    assert new == old_brk_of(t)
    if name == "demo.trace":
        assert new and all(v for v in new.values())  # the demo calls brk: the comparison is not of two empties


def old_region_names(rd, pid: int, v: pd.DataFrame, regions) -> list[str]:
    """views.region_names as it was before it named groups of lifetimes (a name per row)."""
    rstarts = [s for s, _ in regions]
    heap = views._brk_of(rd).get(int(pid), [])
    exe = views.exe_inodes(rd, pid, v)  # unchanged: shared
    st_ = v["start"].to_numpy(np.uint64)
    k = np.searchsorted(np.array(rstarts, dtype=np.uint64), st_, side="right") - 1
    flags = v["vm_flags"].to_numpy(np.uint64)
    ino = v["inode"].to_numpy(np.uint64)
    codes, uniq = pd.factorize(v["path"].astype(str).to_numpy(dtype=object))
    base = np.array([u.rsplit("/", 1)[-1] for u in uniq] + [""], dtype=object)[codes]
    exe_name = pd.Series(ino).map({np.uint64(i): n for i, n in exe.items()}).to_numpy(dtype=object)
    icodes, iuniq = pd.factorize(ino)
    inode_name = np.array([f"file (inode {int(i)})" for i in iuniq], dtype=object)[icodes]
    name = np.where(flags & VM_GROWSDOWN, "[stack]", np.where(flags & VM_HUGETLB, "hugetlb", np.where(
        base != "", base, np.where(pd.notna(exe_name), exe_name,
                                   np.where(ino != 0, inode_name, "anon")))))
    sizes = (v["end"].to_numpy(np.uint64) - st_).astype(np.float64)
    agg = pd.DataFrame({"k": k, "name": name, "size": sizes}).groupby(["k", "name"], sort=False)["size"].sum()
    return views.region_labels(agg, regions, heap)  # unchanged: shared


def _every_region_name(rd, names_of) -> list:
    v = rd.vmas_shown()
    got = []
    for pid, pos in v.groupby("pid").indices.items():
        d = v.iloc[pos]
        lay = views.region_layout(d["start"].to_numpy(np.uint64), d["end"].to_numpy(np.uint64))
        got.append((int(pid), names_of(rd, pid, d, lay.regions)))
    return got


@pytest.mark.parametrize("name", ("demo.trace", "synthetic-failed-split-vma.trace"))
def test_region_names_are_the_per_lifetime_ones(name):
    rd = report_data(mmtrace.open(DATA / name))
    new = _every_region_name(rd, views.region_names)
    assert new == _every_region_name(rd, old_region_names)
    assert any(n for _, names in new for n in names)


PAGE = 4096
_PATHS = ["", "/usr/lib/libc.so.6", "/usr/bin/demo", "/tmp/a b", "/x/libc.so.6"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6), st.sampled_from([0, VM_GROWSDOWN, VM_HUGETLB, 3]),
                          st.integers(0, len(_PATHS) - 1), st.integers(0, 3)), min_size=1, max_size=60),
       st.lists(st.integers(0, 47), max_size=3))
def test_region_names_agree_on_any_lifetimes(rows, brk_pages):
    """Ties of size, several files of one basename, inodes without a path, stacks and
    hugetlb in one region, a heap end: the per-group sums rank names as the per-row ones."""
    starts = np.array([(a << 4) * PAGE for a, *_ in rows], dtype=np.uint64)
    v = pd.DataFrame({
        "pid": 7, "start": starts, "end": starts + np.array([n * PAGE for _, n, *_ in rows], dtype=np.uint64),
        "vm_flags": np.array([f for *_, f, _, _ in rows], dtype=np.uint64),
        "path": np.array([_PATHS[p] for *_, p, _ in rows], dtype=object),  # as _paths_of makes it
        "inode": np.array([(p * 10 + i) if (p or i) else 0 for *_, p, i in rows], dtype=np.uint64),
        "born_ts": np.arange(len(rows), dtype=np.int64), "died_ts": -1})

    class Rd:  # what region_names reads of a ReportData
        _views_brk = {7: [int(b) * 16 * PAGE + PAGE for b in brk_pages]}

        def change_index(self):
            raise LookupError("no changes")

    regions = views.address_regions((v["start"].to_numpy(np.uint64), v["end"].to_numpy(np.uint64)),
                                    min_gap=8 * 16 * PAGE)
    assert views.region_names(Rd(), 7, v, regions) == old_region_names(Rd(), 7, v, regions)
