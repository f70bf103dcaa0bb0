"""Unit tests of the one-model pieces on literal inputs: the exit-time rules,
the VMA join, the kernel facts accessor, comm_at and the analyses registry."""

from __future__ import annotations

import numpy as np
import pytest

import mmtrace
from mmtrace.detect.analyses import ANALYSES, skipped
from mmtrace.events.flags import MREMAP_DONTUNMAP, VM_READ, VM_WRITE, VmFlag
from mmtrace.model.rules import C_CLEAR, C_NONE, C_PROT, C_PROT_WALK, CORRECTING, corrections
from mmtrace.model.vmatree import Vma, VmaTree, join_pieces
from mmtrace.trace.kernelinfo import KernelInfo, MissingKernelFact
from tests.golden.model_frames import DATA

P = 4096


def _sc(rows):
    cols = ("syscall", "arg0", "arg1", "arg2", "arg3", "ret", "brk_enter", "brk_exit")
    d = {c: [r.get(c, 0) for r in rows] for c in cols}
    out = {"code": np.array([CORRECTING.index(n) if n in CORRECTING else 99 for n in d.pop("syscall")], np.int32)}
    for c, v in d.items():
        out[c] = np.array(v, dtype=np.int64 if c == "ret" else np.uint64)
    return out


def test_corrections_follow_the_kernel_rules():
    a = 0x7F0000000000
    rows = [
        {"syscall": "munmap", "arg0": a, "arg1": 3 * P + 1, "ret": 0},  # length rounded up to pages
        {"syscall": "munmap", "arg0": a, "arg1": P, "ret": -22},  # failed: nothing
        {"syscall": "mprotect", "arg0": a, "arg1": 2 * P, "arg2": 1, "ret": 0},
        {"syscall": "mprotect", "arg0": a, "arg1": 2 * P, "arg2": 1, "ret": -12},  # ENOMEM: up to the hole
        {"syscall": "mprotect", "arg0": a, "arg1": 2 * P, "arg2": 1, "ret": -13},  # EACCES: the walk up to the refused VMA (engine)
        {"syscall": "mremap", "arg0": a, "arg1": 4 * P, "arg2": P, "ret": a},  # shrink in place
        {"syscall": "mremap", "arg0": a, "arg1": P, "arg2": 4 * P, "ret": a},  # grow in place
        {"syscall": "mremap", "arg0": a, "arg1": P, "arg2": 4 * P, "arg3": 1, "ret": a + 16 * P},  # moved
        {"syscall": "mremap", "arg0": a, "arg1": P, "arg2": P, "arg3": 1 | MREMAP_DONTUNMAP, "ret": a + 16 * P},
        {"syscall": "brk", "brk_enter": 0x5000_0000 + 3 * P, "brk_exit": 0x5000_0000 + 1, "ret": 0},  # shrink
        {"syscall": "brk", "brk_enter": 0x5000_0000, "brk_exit": 0x5000_0000 + 3 * P, "ret": 0},  # grow
        {"syscall": "mmap", "arg0": 0, "arg1": P, "ret": a},  # not a correcting syscall
    ]
    kind, lo, hi = corrections(_sc(rows), np.arange(len(rows)))
    assert kind.tolist() == [C_CLEAR, C_NONE, C_PROT, C_PROT, C_PROT_WALK, C_CLEAR, C_NONE, C_CLEAR, C_NONE, C_CLEAR,
                             C_NONE, C_NONE]
    assert (lo[0], hi[0]) == (a, a + 4 * P)
    assert (lo[5], hi[5]) == (a + P, a + 4 * P)
    assert (lo[7], hi[7]) == (a, a + P)
    assert (lo[9], hi[9]) == (0x5000_0000 + P, 0x5000_0000 + 3 * P)


def test_join_pieces_and_vmas():
    t = VmaTree(1, 1)
    rw = VM_READ | VM_WRITE
    t.assign(0x1000, 0x3000, (7, rw, 0, 0, 0, 0, 0))
    t.assign(0x3000, 0x4000, (7, rw, 0, 0, 0, 1, 0))  # one VMA in two pieces (boundary moved in place)
    t.assign(0x4000, 0x5000, (8, rw, 0, 0, 0, 0, 0))  # adjacent, another VMA
    t.assign(0x5000, 0x6000, (0, VM_READ, 0, 0, 0, 0, 0))  # snapshot pieces (no pointer) never join
    t.assign(0x6000, 0x7000, (0, VM_READ, 0, 0, 0, 0, 0))
    assert [(s, e) for s, e, _ in join_pieces(t.starts, t.ends, t.vals)] == [
        (0x1000, 0x4000), (0x4000, 0x5000), (0x5000, 0x6000), (0x6000, 0x7000)]
    v = t.vmas()
    assert v[0] == Vma(0x1000, 0x4000, 7, rw, 0x1000, 0, 0) and v[0].vm_flags & VmFlag.VM_WRITE
    assert [x.start for x in t.vmas(0x4800, 0x5800)] == [0x4000, 0x5000]


def test_kernel_facts_raise_when_missing():
    k = KernelInfo({"page_size": 4096, "mmap_min_addr": 65536, "stack_guard_gap_pages": 256,
                    "probe_plan": {"offsets": {"mm_struct.mm_mt": 64}}})
    assert (k.page_size, k.mmap_min_addr, k.stack_guard_gap, k.mm_mt) == (4096, 65536, 256 * 4096, 64)
    empty = KernelInfo({})
    for attr in ("page_size", "mmap_min_addr", "mm_mt", "stack_guard_gap"):
        with pytest.raises(MissingKernelFact, match="does not record"):
            getattr(empty, attr)
    assert mmtrace.open(DATA / "demo.trace").kernel.mm_mt == 64


def test_comm_at_any_order():
    t = mmtrace.open(DATA / "demo.trace")
    p = t.processes(counts=False)
    pid, start = int(p["pid"].iloc[0]), int(p["start_ts"].iloc[0])
    got = t.comm_at([pid, pid, 999_999_999], [int(t.metadata["stop_ns"]), start, start])
    assert got[0] and got[1] and got[2] == ""


def test_analyses_say_what_they_need():
    t = mmtrace.open(DATA / "synthetic-failed-split-vma.trace")
    why = skipped(t)
    assert "unmapped_area" in why and "unmapped_area" in why["unmapped_area"]
    assert "changes" not in why and set(why) <= set(ANALYSES)
    demo = mmtrace.open(DATA / "demo.trace")
    assert skipped(demo) == {}
    assert len(ANALYSES["changes"].fn(demo, {})) == len(demo.changes())


def test_changes_csv_with_pyarrow(tmp_path):
    import pandas as pd

    from mmtrace.model.tables import hex_text, write_changes_csv

    assert hex_text([0, 1, 0x7F994C9E9000, 2**64 - 1]).to_pylist() == ["0x0", "0x1", "0x7f994c9e9000",
                                                                       "0xffffffffffffffff"]
    ch = mmtrace.open(DATA / "demo.trace").changes()
    write_changes_csv(ch, tmp_path / "c.csv")
    back = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert len(back) == len(ch) and list(back.columns) == list(ch.columns)
    r = ch.iloc[1]
    want = "; ".join(f"{s:#x}-{e:#x} {p}" for s, e, p in r["after"])
    assert back["after"].iloc[1] == want and int(back["lo"].iloc[1], 16) == int(r["lo"])
