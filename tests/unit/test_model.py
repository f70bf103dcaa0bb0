"""mmtrace.model on literal, hand-built event frames (no root, no kernel)."""

from __future__ import annotations

import pandas as pd
import pytest

from mmtrace.events.schema import TW_CURRENT_MM, TW_VAL_IS_VMA
from mmtrace.model import Model, VmaTree, changes, classify, vmas
from tests.conftest import frame

MT = 64  # offsetof(mm_struct, mm_mt)
MM, MM2, MM3 = 0xFFFF888000100000, 0xFFFF888000200000, 0xFFFF888000300000
T, T2, T3 = MM + MT, MM2 + MT, MM3 + MT
P = 0x1000
A = 0x7F0000000000
PID = 100
SYSCALLS = {"mmap": 1, "munmap": 2, "mprotect": 3, "mremap": 5, "brk": 6, "execve": 10}
RW, R = 0x73, 0x71  # VM_READ|WRITE|MAY*, VM_READ|MAY*


class FakeTrace:
    """The part of TraceFile the model reads."""

    def __init__(self, tw=(), sc=(), proc=(), exit_mmap=(), snaps=None):
        self.metadata = {"probe_plan": {"offsets": {"mm_struct.mm_mt": MT}}}
        self._ev = {
            "tree_write": frame("tree_write", list(tw), fn_names={1: "mas_store_prealloc", 2: "mas_wr_node_store", 3: "mas_store"}),
            "syscall": frame("syscall", list(sc), syscalls=SYSCALLS),
            "proc": frame("proc", list(proc)),
            "exit_mmap": frame("exit_mmap", list(exit_mmap)),
        }
        self.kinds = [k for k, v in self._ev.items() if len(v)]
        self._snaps = snaps

    def raw_events(self, kind):
        return self._ev[kind].sort_values("ts", kind="stable", ignore_index=True)

    def snapshots(self):
        return self._snaps if self._snaps is not None else pd.DataFrame()


def store(ts, lo, hi, vma, flags=RW, tree=T, mm=MM, tid=PID, fn=1, cur=True):
    """A store of VMA pointer ``vma`` = [lo, hi) (vma 0: a clear)."""
    f = (TW_CURRENT_MM if cur and tree == mm + MT else 0) | (TW_VAL_IS_VMA if vma else 0)
    r = dict(ts=ts, tgid=PID if tid == PID else tid, tid=tid, fn=fn, tree=tree, mm=mm, index=lo, last=hi - 1,
             val=vma, op=0, flags=f)
    if vma:
        r.update(vm_start=lo, vm_end=hi, vm_flags=flags, vm_pgoff=lo >> 12)
    return r


def sc(name, ts, args, ret, tid=PID, mm=MM, brk=(0, 0)):
    r = dict(ts=ts, ts_enter=ts - 5, tgid=tid, tid=tid, sc=SYSCALLS[name], ret=ret, mm=mm,
             brk_enter=brk[0], brk_exit=brk[1], args=list(args) + [0] * (6 - len(args)))
    return r


def lines(df):
    return [(int(s), int(e), p) for s, e, p in zip(df["start"], df["end"], df["perms"])]


def base():
    # Tree T known from a CURRENT_MM store; one 16-page rw mapping at A.
    return [store(10, A, A + 16 * P, 0xA1)], [sc("mmap", 11, [0, 16 * P, 3, 0x22], A)]


# -- the interval map -----------------------------------------------------------
def test_vmatree_assign_split_overwrite_clear():
    t = VmaTree(None, 0)
    t.assign(0, 100, ("a",))
    t.assign(40, 60, ("b",))
    assert list(zip(t.starts, t.ends)) == [(0, 40), (40, 60), (60, 100)]
    t.assign(30, 70, None)
    assert list(zip(t.starts, t.ends)) == [(0, 30), (70, 100)]
    t.assign(0, 200, ("c",))
    assert list(zip(t.starts, t.ends, t.vals)) == [(0, 200, ("c",))]
    t.assign(500, 600, None)  # clearing a gap: nothing
    t.check()
    assert len(t) == 1


def test_classify():
    assert classify([], [(0, 1)]) == "map"
    assert classify([(0, 2)], []) == "unmap"
    assert classify([(0, 3)], [(0, 1), (1, 2), (2, 3)]) == "split"
    assert classify([(0, 1), (1, 3)], [(0, 3)]) == "merge"
    assert classify([(0, 3)], [(0, 5)]) == "expand"
    assert classify([(0, 5)], [(0, 3)]) == "shrink"


# -- syscall scenarios ----------------------------------------------------------------
def test_split_by_mprotect_and_merge_back():
    tw, s = base()
    # mprotect pages 6-9 to r: two splits store the outer pieces (new VMAs); the
    # middle one keeps the original VMA and changes its flags in place (silent).
    tw += [store(20, A, A + 6 * P, 0xB1), store(21, A + 10 * P, A + 16 * P, 0xB2)]
    s += [sc("mprotect", 25, [A + 6 * P, 4 * P, 1], 0)]
    # back to rw: merge stores the merged VMA over the whole range
    tw += [store(30, A, A + 16 * P, 0xB1)]
    s += [sc("mprotect", 35, [A + 6 * P, 4 * P, 3], 0)]
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 26)) == [(A, A + 6 * P, "rw-p"), (A + 6 * P, A + 10 * P, "r--p"), (A + 10 * P, A + 16 * P, "rw-p")]
    assert lines(vmas(tr, PID, 40)) == [(A, A + 16 * P, "rw-p")]
    ch = changes(tr, PID)
    assert ch["kind"].tolist() == ["map", "split", "merge"]
    assert ch["syscall"].tolist() == ["mmap", "mprotect", "mprotect"]


def test_mprotect_whole_vma_in_place_is_silent():
    tw, s = base()
    s += [sc("mprotect", 25, [A, 16 * P, 1], 0)]
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 30)) == [(A, A + 16 * P, "r--p")]
    assert changes(tr)["kind"].tolist() == ["map", "protect"]


def test_hole_punch_with_silent_clear():
    tw, s = base()
    # munmap pages 7-8: the split pieces are stored, the middle clear is silent
    tw += [store(20, A, A + 7 * P, 0xC1), store(21, A + 9 * P, A + 16 * P, 0xC2)]
    s += [sc("munmap", 25, [A + 7 * P, 2 * P], 0)]
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 30)) == [(A, A + 7 * P, "rw-p"), (A + 9 * P, A + 16 * P, "rw-p")]
    assert lines(vmas(tr, PID, 21)) == [(A, A + 7 * P, "rw-p"), (A + 7 * P, A + 9 * P, "rw-p"), (A + 9 * P, A + 16 * P, "rw-p")]


def test_map_fixed_over_existing():
    tw, s = base()
    tw += [store(20, A + 2 * P, A + 4 * P, 0xD1, flags=R)]
    s += [sc("mmap", 22, [A + 2 * P, 2 * P, 1, 0x32], A + 2 * P)]
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 30)) == [(A, A + 2 * P, "rw-p"), (A + 2 * P, A + 4 * P, "r--p"), (A + 4 * P, A + 16 * P, "rw-p")]


def test_mremap_move_clears_old_range_silently():
    tw, s = base()
    B = A + 0x100000
    tw += [store(20, B, B + 16 * P, 0xE1)]  # copy_vma at the new place; old one removed silently
    s += [sc("mremap", 25, [A, 16 * P, 16 * P, 1], B)]
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 30)) == [(B, B + 16 * P, "rw-p")]
    assert changes(tr)["kind"].tolist() == ["map", "move"]


def test_brk_shrink_uses_brk_enter_exit():
    H = 0x555555560000
    tw = [store(10, H, H + 8 * P, 0xF1)]
    s = [sc("brk", 11, [H + 8 * P], H + 8 * P, brk=(H, H + 8 * P)), sc("brk", 20, [H + 2 * P], H + 2 * P, brk=(H + 8 * P, H + 2 * P))]
    # the shrink's store of the shortened heap is an in-place vm_end edit... the clear is silent
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 30)) == [(H, H + 2 * P, "rw-p")]


def test_fork_copy_dontcopy_and_child():
    tw, s = base()
    tw += [store(12, A + 0x100000, A + 0x101000, 0xA2)]  # a VM_DONTCOPY vma: not re-stored in the child
    s += [sc("mmap", 13, [0, P, 3, 0x22], A + 0x100000)]
    # dup_mmap: the child's tree (T2) gets one mas_store per copied VMA, in the parent's context
    tw += [store(20, A, A + 16 * P, 0x1A1, tree=T2, mm=MM, fn=3)]
    proc = [dict(ts=30, tgid=PID, tid=PID, what=1, pid=200, child_tgid=200, mm=MM2, tree=T2)]
    tw += [store(40, A, A + 16 * P, 0, tree=T2, mm=MM2, tid=200)]  # the child unmaps
    s += [sc("munmap", 41, [A, 16 * P], 0, tid=200, mm=MM2)]
    tr = FakeTrace(tw, s, proc)
    assert lines(vmas(tr, 200, 35)) == [(A, A + 16 * P, "rw-p")]
    assert lines(vmas(tr, 200, 45)) == []
    assert len(vmas(tr, PID, 45)) == 2  # the parent is untouched
    ch = changes(tr, 200)
    assert ch["kind"].tolist() == ["fork_copy", "unmap"]


def test_exec_new_tree_and_exit():
    tw, s = base()
    # exec writes the new tree while current->mm is still the old one
    tw += [store(20, 0x7FFFFFFDE000, 0x7FFFFFFFF000, 0x2A1, tree=T3, mm=MM, cur=False)]
    tw += [store(22, 0x400000, 0x401000, 0x2A2, flags=0x75, tree=T3, mm=MM3)]
    proc = [dict(ts=25, tgid=PID, tid=PID, what=2, pid=PID, child_tgid=PID, mm=MM3, tree=T3)]
    em = [dict(ts=21, mm=MM, mt=T)]
    proc += [dict(ts=50, tgid=PID, tid=PID, what=3, pid=PID, mm=MM3, tree=T3, flags=4)]
    em += [dict(ts=51, mm=MM3, mt=T3)]
    tr = FakeTrace(tw, s, proc, em)
    assert lines(vmas(tr, PID, 15)) == [(A, A + 16 * P, "rw-p")]
    assert lines(vmas(tr, PID, 30)) == [(0x400000, 0x401000, "r-xp"), (0x7FFFFFFDE000, 0x7FFFFFFFF000, "rw-p")]
    assert lines(vmas(tr, PID, 60)) == []
    kinds = changes(tr)["kind"].tolist()
    assert "exec_setup" in kinds and kinds.count("exit") == 2


def test_pointer_reuse():
    tw, s = base()
    tw += [store(20, A, A + 16 * P, 0)]  # munmap: the VMA is freed...
    s += [sc("munmap", 21, [A, 16 * P], 0)]
    B = A + 0x200000
    tw += [store(30, B, B + 4 * P, 0xA1, flags=R)]  # ...and its slab slot reused at once
    s += [sc("mmap", 31, [0, 4 * P, 1, 0x22], B)]
    tr = FakeTrace(tw, s)
    df = vmas(tr, PID, 40)
    assert lines(df) == [(B, B + 4 * P, "r--p")]
    assert df["vma"].tolist() == [0xA1]


def test_attached_process_from_snapshot_adopts_tree():
    snaps = pd.DataFrame({
        "pid": [PID, PID], "when": ["attach", "attach"], "ts_before": [1, 1], "ts_after": [2, 2],
        "start": [A, A + 16 * P], "end": [A + 16 * P, A + 20 * P], "perms": ["rw-p", "r--s"], "pgoff": [0, 0],
        "dev": ["00:00", "fe:01"], "inode": [0, 1234], "path": ["", "/x"],
    })
    s = [sc("munmap", 10, [A, 16 * P], 0)]  # silent exact-fit clear on a tree never stored to
    tr = FakeTrace([], s, snaps=snaps)
    assert lines(vmas(tr, PID, 5)) == [(A, A + 16 * P, "rw-p"), (A + 16 * P, A + 20 * P, "r--s")]
    df = vmas(tr, PID, 20)
    assert lines(df) == [(A + 16 * P, A + 20 * P, "r--s")]
    assert df["path"].tolist() == ["/x"]


def test_checkpoints_give_same_answers_as_full_replay():
    tw, s = base()
    for k in range(50):
        tw.append(store(100 + 10 * k, A + 0x100000 + k * P, A + 0x100000 + (k + 1) * P, 0x500 + k))
    tr = FakeTrace(tw, s)
    m = Model(tr, checkpoint_every=7)
    full = Model(tr, checkpoint_every=10**9)
    for at in (0, 50, 333, 999):
        pd.testing.assert_frame_equal(m.vmas(PID, at), full.vmas(PID, at))
    got = {at: lines(df) for _, at, df in m.sweep([(PID, 333), (PID, 50)])}
    assert got[333] == lines(full.vmas(PID, 333))


def test_other_trees_ignored():
    tw, s = base()
    # munmap's detach tree (indexes 0,1,2..., VMA of another tree) and a tmpfs tree
    tw += [dict(ts=20, tgid=PID, tid=PID, fn=2, tree=0xFFFFC90000001000, mm=MM, index=0, last=0, val=0xA1, op=0, flags=0)]
    tw += [dict(ts=21, tgid=PID, tid=PID, fn=2, tree=0xFFFF888000900000, mm=MM, index=5, last=9, val=0, op=0, flags=0)]
    tr = FakeTrace(tw, s)
    assert lines(vmas(tr, PID, 30)) == [(A, A + 16 * P, "rw-p")]


@pytest.mark.parametrize("ret", [-12])
def test_mprotect_enomem_stops_at_hole(ret):
    tw, s = base()
    tw += [store(12, A + 17 * P, A + 18 * P, 0xA3)]
    s += [sc("mprotect", 20, [A, 18 * P, 1], ret)]
    tr = FakeTrace(tw, s)
    assert [p for *_, p in lines(vmas(tr, PID, 30))] == ["r--p", "rw-p"]
