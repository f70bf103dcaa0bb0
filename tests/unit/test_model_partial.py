"""Syscalls that fail part-way, PROT_GROWSDOWN and mseal, on literal events (mmtrace.model.rules C_PROT_WALK/C_SEAL)."""

from __future__ import annotations

from mmtrace.model import changes, vmas
from tests.conftest import frame
from tests.unit import test_model as tm
from tests.unit.test_model import A, MT, P, PID, R, RW, lines, store

SYSCALLS = dict(tm.SYSCALLS, mseal=462, pkey_mprotect=329)
EPERM, EACCES, ENOMEM = -1, -13, -12
PROT_READ, PROT_WRITE, PROT_EXEC, PROT_GROWSDOWN = 1, 2, 4, 0x01000000
# a read-only MAP_SHARED file: VM_READ|VM_MAYREAD|VM_MAYEXEC|VM_MAYSHARE, no VM_MAYWRITE
SHARED_RO = 0x01 | 0x10 | 0x40 | 0x80
STACK = RW | 0x100  # VM_GROWSDOWN


class Trace(tm.FakeTrace):
    def __init__(self, tw=(), sc=()):
        super().__init__(tw, ())
        self._ev["syscall"] = frame("syscall", list(sc), syscalls=SYSCALLS)
        self.kinds = [k for k, v in self._ev.items() if len(v)]
        self.metadata = {"probe_plan": {"offsets": {"mm_struct.mm_mt": MT}}}


def sc(name, ts, args, ret):
    return dict(ts=ts, ts_enter=ts - 5, tgid=PID, tid=PID, sc=SYSCALLS[name], ret=ret, mm=tm.MM,
                brk_enter=0, brk_exit=0, args=list(args) + [0] * (6 - len(args)))


def two(flags2=R):
    tw = [store(10, A, A + P, 0xA1, flags=R), store(11, A + P, A + 2 * P, 0xA2, flags=flags2)]
    return tw, [sc("mmap", 12, [0, 2 * P, 1, 0x22], A)]


def test_mprotect_eperm_on_sealed_vma_changes_the_ones_before():
    # mseal_test: mmap 2 pages r, mseal the second, mprotect both to PROT_EXEC = -EPERM
    tw, s = two()
    s += [sc("mseal", 20, [A + P, P, 0], 0), sc("mprotect", 30, [A, 2 * P, PROT_EXEC], EPERM)]
    tr = Trace(tw, s)
    assert lines(vmas(tr, PID, 40)) == [(A, A + P, "--xp"), (A + P, A + 2 * P, "r--p")]
    # the seal itself changes no perms; the failed mprotect is a protect of the first VMA
    ch = changes(tr)
    row = ch[ch["syscall"] == "mprotect"].iloc[0]
    assert row["kind"] == "protect" and row["after"] == [(A, A + P, "--xp")]


def test_mprotect_eperm_first_vma_sealed_changes_nothing():
    tw, s = two()
    s += [sc("mseal", 20, [A, P, 0], 0), sc("mprotect", 30, [A, 2 * P, PROT_EXEC], EPERM)]
    assert [p for *_, p in lines(vmas(Trace(tw, s), PID, 40))] == ["r--p", "r--p"]


def test_mprotect_eperm_sealed_flag_from_the_store():
    # VM_SEALED (BIT(42) on 6.17+) shown by the store itself (e.g. a sealed system mapping)
    tw, s = two(flags2=R | (1 << 42))
    s += [sc("mprotect", 30, [A, 2 * P, PROT_EXEC], EPERM)]
    assert [p for *_, p in lines(vmas(Trace(tw, s), PID, 40))] == ["--xp", "r--p"]


def test_failed_mseal_seals_nothing():
    tw, s = two()
    s += [sc("mseal", 20, [A + P, P, 0], ENOMEM), sc("mprotect", 30, [A, 2 * P, PROT_EXEC], 0)]
    assert [p for *_, p in lines(vmas(Trace(tw, s), PID, 40))] == ["--xp", "--xp"]


def test_mprotect_eacces_on_shared_readonly_file_changes_the_ones_before():
    tw, s = two(flags2=SHARED_RO)
    s += [sc("mprotect", 30, [A, 2 * P, PROT_READ | PROT_WRITE], EACCES)]
    assert lines(vmas(Trace(tw, s), PID, 40)) == [(A, A + P, "rw-p"), (A + P, A + 2 * P, "r--s")]


def test_mprotect_error_without_a_refusing_vma_changes_nothing():
    # the tree shows no VMA that would refuse: the model cannot tell where the walk stopped
    tw, s = two()
    s += [sc("mprotect", 30, [A, 2 * P, PROT_READ | PROT_WRITE], EACCES)]
    assert [p for *_, p in lines(vmas(Trace(tw, s), PID, 40))] == ["r--p", "r--p"]


def test_pkey_mprotect_eperm_walks_too():
    tw, s = two()
    s += [sc("mseal", 20, [A + P, P, 0], 0), sc("pkey_mprotect", 30, [A, 2 * P, PROT_EXEC, 0], EPERM)]
    assert [p for *_, p in lines(vmas(Trace(tw, s), PID, 40))] == ["--xp", "r--p"]


def test_prot_growsdown_applies_from_the_stack_start():
    # glibc's _dl_make_stack_executable: mprotect(a page near the top, ..., RWX | PROT_GROWSDOWN);
    # the whole stack VMA changes in place (no store)
    S = 0x7FFF00000000
    tw = [store(10, S, S + 32 * P, 0xB1, flags=STACK)]
    s = [sc("mmap", 11, [0, P, 3, 0x22], S), sc("mprotect", 30, [S + 31 * P, P, 7 | PROT_GROWSDOWN], 0)]
    tr = Trace(tw, s)
    assert lines(vmas(tr, PID, 40)) == [(S, S + 32 * P, "rwxp")]
    assert changes(tr)["kind"].tolist()[-1] == "protect"


def test_prot_growsdown_below_the_top_keeps_the_stores_split():
    S = 0x7FFF00000000
    # end below the VMA's end: vma_modify_flags splits (stored: [S, S+17P) and [S+17P, S+32P))
    tw = [store(10, S, S + 32 * P, 0xB1, flags=STACK),
          store(29, S, S + 17 * P, 0xB1, flags=STACK), store(29, S + 17 * P, S + 32 * P, 0xB2, flags=STACK)]
    s = [sc("mmap", 11, [0, P, 3, 0x22], S), sc("mprotect", 30, [S + 16 * P, P, 7 | PROT_GROWSDOWN], 0)]
    assert lines(vmas(Trace(tw, s), PID, 40)) == [(S, S + 17 * P, "rwxp"), (S + 17 * P, S + 32 * P, "rw-p")]


def test_munmap_eperm_on_sealed_clears_nothing():
    tw, s = two()
    s += [sc("mseal", 20, [A + P, P, 0], 0), sc("munmap", 30, [A, 2 * P], EPERM)]
    assert len(vmas(Trace(tw, s), PID, 40)) == 2


def test_mprotect_of_len_0_changes_nothing():
    # mseal_test: mprotect(addr, 0, RW) = 0 inside a VMA must not cut it (do_mprotect_pkey: "if (!len) return 0")
    tw = [store(10, A, A + 16 * P, 0xA1, flags=R)]
    s = [sc("mmap", 12, [0, 16 * P, 1, 0x22], A), sc("mprotect", 30, [A + 4 * P, 0, PROT_READ | PROT_WRITE], 0),
         sc("mseal", 31, [A + 4 * P, 0, 0], 0)]
    assert lines(vmas(Trace(tw, s), PID, 40)) == [(A, A + 16 * P, "r--p")]


# -- modelled / not_modelled_reason (mmtrace.model.coverage) -------------------------------------
def _exec_trace(stack_end):
    """An exec whose new tree T3 gets its stack at 0x7ffffffff000 (setup_arg_pages), then moved
    down to end at ``stack_end`` (relocate_vma_down: the old range cleared); a fork child after."""
    tw = [store(20, 0x7FFFFFFDE000, 0x7FFFFFFFF000, 0x2A1, tree=tm.T3, mm=tm.MM, cur=False),
          store(21, stack_end - 0x21000, stack_end, 0x2A1, tree=tm.T3, mm=tm.MM, cur=False),
          store(21, stack_end, 1 << 64, 0, tree=tm.T3, mm=tm.MM, cur=False),
          store(22, 0x56555000, 0x56556000, 0x2A2, flags=0x75, tree=tm.T3, mm=tm.MM3)]
    proc = [dict(ts=25, tgid=PID, tid=PID, what=2, pid=PID, child_tgid=PID, mm=tm.MM3, tree=tm.T3),
            dict(ts=30, tgid=PID, tid=PID, what=1, pid=PID, child_tgid=PID + 1, mm=tm.MM2, tree=tm.T2)]
    return tm.FakeTrace(tw, [], proc, [])


def test_compat_process_is_not_modelled():
    from mmtrace.model.coverage import COMPAT_REASON, modelled

    m = modelled(_exec_trace(0xFFFDD000), [PID, PID + 1]).set_index("pid")
    assert not m.loc[PID, "modelled"] and m.loc[PID, "not_modelled_reason"].startswith(COMPAT_REASON)
    assert not m.loc[PID + 1, "modelled"]  # a fork child of a compat process is one too


def test_compat_process_is_modelled_when_its_syscalls_were_followed():
    from mmtrace.model.coverage import modelled

    tr = _exec_trace(0xFFFDD000)
    tr.metadata = {"probe_plan": {"features": {"compat_syscalls": True}}}
    assert modelled(tr, [PID, PID + 1])["modelled"].all()
    tr.metadata = {"probe_plan": {"features": {"compat_syscalls": False,
                                               "compat_syscalls_missing": "MMTRACE_COMPAT_SYSCALLS=0"}}}
    m = modelled(tr, [PID]).set_index("pid")
    assert m.loc[PID, "not_modelled_reason"].endswith("(MMTRACE_COMPAT_SYSCALLS=0)")


def test_64bit_process_is_modelled():
    from mmtrace.model.coverage import modelled

    m = modelled(_exec_trace(0x7FFC00000000), [PID, PID + 1]).set_index("pid")
    assert m["modelled"].all() and (m["not_modelled_reason"] == "").all()


# -- threads: a munmap's silent clear is seen from its last store on (stream._clear_instants) ------
def _thread_sc(name, ts, args, ret, tid, enter):
    return dict(sc(name, ts, args, ret), tid=tid, ts_enter=enter)


def test_munmap_hole_is_visible_before_the_munmap_returns():
    tw = [store(10, A, A + 16 * P, 0xA1)]
    s = [sc("mmap", 11, [0, 16 * P, 3, 0x22], A)]
    # munmap pages 4-11 from 20 to 400: the splits are stored at 30, the clear is silent,
    # then the pages are zapped until the exit
    tw += [store(30, A, A + 4 * P, 0xC1), store(31, A + 12 * P, A + 16 * P, 0xC2)]
    s += [sc("munmap", 400, [A + 4 * P, 8 * P], 0)]
    s[-1]["ts_enter"] = 20
    tr = Trace(tw, s)
    assert lines(vmas(tr, PID, 25)) == [(A, A + 16 * P, "rw-p")]
    hole = [(A, A + 4 * P, "rw-p"), (A + 12 * P, A + 16 * P, "rw-p")]
    assert lines(vmas(tr, PID, 100)) == hole  # another thread sees the hole now
    assert lines(vmas(tr, PID, 500)) == hole


def test_munmap_clears_what_another_thread_stored_before_it_took_the_lock():
    # thread 101 stores [A+16P, A+20P) (merged into the same VMA range the munmap removes)
    # while thread 100's munmap waits for mmap_lock; the munmap's own store comes after it
    tw = [store(10, A, A + 16 * P, 0xA1)]
    s = [sc("mmap", 11, [0, 16 * P, 3, 0x22], A)]
    tw += [store(25, A + 8 * P, A + 20 * P, 0xB1, tid=101), store(30, A, A + 8 * P, 0xC1)]
    s += [_thread_sc("munmap", 400, [A + 8 * P, 12 * P], 0, PID, 20)]
    tr = Trace(tw, s)
    assert lines(vmas(tr, PID, 100)) == [(A, A + 8 * P, "rw-p")]
    # a store another thread makes after the munmap's last store survives its exit
    tw += [store(200, A + 8 * P, A + 10 * P, 0xD1, tid=101)]
    tr = Trace(tw, s)
    assert lines(vmas(tr, PID, 500)) == [(A, A + 8 * P, "rw-p"), (A + 8 * P, A + 10 * P, "rw-p")]
