"""Golden: the checked-in demo trace (tests/golden/make_golden.sh made it) read back.

The expected CSVs sit beside the trace; regenerate them with make_golden.py
only after checking the new output by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import mmtrace
from mmtrace.events.procmaps import read_checkpoints
from tests.golden.make_golden import DATA, expected_frames

pytestmark = pytest.mark.golden


@pytest.fixture(scope="module")
def trace():
    return mmtrace.open(DATA / "demo.trace")


@pytest.mark.parametrize("name", ["processes", "syscalls", "proc"])
def test_frames_match_expected_csv(trace, name, tmp_path):
    got = expected_frames(trace)[name]
    got.to_csv(tmp_path / "got.csv", index=False)
    want = pd.read_csv(DATA / f"demo.{name}.csv", keep_default_na=False)
    have = pd.read_csv(tmp_path / "got.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(have, want)


def test_trace_facts(trace):
    assert trace.complete and sum(trace.lost.values()) == 0
    procs = trace.processes().set_index("pid")
    main = procs[procs["attached"]].index[0]
    # demo: a thread, a forked child that exits, and a fork+exec of /bin/true
    assert procs.loc[main, "threads"] == 2
    kids = procs[procs["ppid"] == main]
    assert len(kids) == 2 and ["/bin/true"] in list(kids["exec"])
    sc = trace.events("syscall")
    for name in ("mmap", "mprotect", "munmap", "mremap", "brk", "execve", "madvise"):
        assert (sc["syscall"] == name).any(), name
    # a MAP_HUGETLB mapping (0x40000) of 2 huge pages
    hug = sc[(sc["syscall"] == "mmap") & ((sc["arg3"] & 0x40000) != 0)]
    assert len(hug) >= 2 and (hug["ret"] % (2 << 20) == 0).all()
    tw = trace.events("tree_write")
    assert ((tw["flags"] & 0x1) != 0).any() and set(tw["fn"]) >= {"mas_store_prealloc", "mas_wr_node_store"}
    huge_vmas = tw[((tw["flags"] & 0x1) != 0) & ((tw["vm_flags"] & 0x00400000) != 0)]  # VM_HUGETLB
    assert len(huge_vmas) >= 1


def test_checkpoints_bracket_events(trace):
    cp = read_checkpoints(DATA / "demo.checkpoints")
    assert cp["pid"].nunique() == 2
    # The checkpoints were taken while recording: same clock as the events.
    ts = trace.events("syscall")["ts"]
    assert cp["t_before"].min() >= ts.min() - 10**9 and cp["t_after"].max() <= trace.metadata["stop_ns"]


def test_model_matches_every_checkpoint(trace):
    """The rebuilt trees equal /proc/PID/maps at each of the demo's checkpoints (no root needed)."""
    from mmtrace.cli.verify import verify

    res = verify(DATA / "demo.trace", DATA / "demo.checkpoints")
    assert res.total >= 25
    assert res.matched == res.total, "\n".join(m.describe() for m in res.mismatches[:3])


def test_vmas_at_a_checkpoint_equal_maps(trace):
    cp = read_checkpoints(DATA / "demo.checkpoints")
    one = cp[cp["op"] == "mprotect-middle"]
    pid, t0 = int(one["pid"].iloc[0]), int(one["t_before"].iloc[0])
    got = trace.vmas(pid, t0)
    want = one[one["path"] != "[vsyscall]"]
    assert list(zip(got["start"], got["end"], got["perms"])) == list(zip(want["start"], want["end"], want["perms"]))
    # the split: three VMAs of 6, 4, 6 pages, rw-p / r--p / rw-p, with kernel pointers
    mid = got[got["perms"] == "r--p"]
    assert ((mid["end"] - mid["start"]) == 4 * 4096).any()
    assert (got["vma"] != 0).any()
