"""The probe plan (capture/kernel.py) on a made-up kernel: a tracefs tree in
a temporary directory and a BTF stand-in.  No root, no BCC.

Checks the choice of syscall hook and what it tells the collectors (-D flags).
"""

from __future__ import annotations

import platform

import pytest

from mmtrace.capture import kernel as K

# Offsets as on the project's x86_64 kernel (pt_regs is architecture ABI).
_OFFSETS = {
    ("pt_regs", "di"): 112,
    ("pt_regs", "si"): 104,
    ("pt_regs", "dx"): 96,
    ("pt_regs", "r10"): 56,
    ("pt_regs", "r8"): 72,
    ("pt_regs", "r9"): 64,
    ("pt_regs", "bp"): 32,
    ("pt_regs", "bx"): 40,
    ("pt_regs", "cx"): 88,
    ("task_struct", "thread_info"): 0,
    ("thread_info", "status"): 16,
}


class FakeBtf:
    """offsetof/has_member over every member the plan asks for; ``lacking`` members are absent."""

    def __init__(self, lacking: set[tuple[str, str]] = frozenset()) -> None:
        self.lacking = set(lacking)
        self.asked: list[tuple[str, str]] = []

    def has_member(self, struct: str, member: str) -> bool:
        return (struct, member) not in self.lacking

    def offsetof(self, struct: str, member: str) -> int:
        assert (struct, member) not in self.lacking
        self.asked.append((struct, member))
        return _OFFSETS.get((struct, member), 8 * (len(self.asked) % 16))

    # the hugetlb cgroup counter's layout (capture/kernel.py BTF_MEMBERS_HUGETLB_CGROUP)
    def member_size(self, struct: str, member: str) -> int:
        return 2 * 192

    def sizeof(self, name: str) -> int:
        return 192

    def enum_value(self, name: str) -> int:
        return 10

    # No btf_trace_* typedef, no kfunc: the direct-read features stay off
    # without a bpf() call (capture/kernel.py _tp_btf, _rdonly_cast).
    def typedef_id(self, name: str) -> None:
        return None

    def func_id(self, name: str) -> None:
        return None

    def struct_id(self, name: str) -> int:
        return 1


def _tracepoint(root, tp: str, fields: list[str]) -> None:
    cat, name = tp.split(":")
    d = root / "events" / cat / name
    d.mkdir(parents=True)
    lines = [f"name: {name}", "format:", "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;"]
    off = 8
    for f in fields:
        lines.append(f"\tfield:{f};\toffset:{off};\tsize:8;\tsigned:0;")
        off += 8
    (d / "format").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tracefs(tmp_path):
    for tp in K.REQUIRED_TRACEPOINTS + ("maple_tree:ma_op", "mmap:exit_mmap"):
        _tracepoint(tmp_path, tp, ["unsigned long x"])
    for name in ("mmap", "munmap", "brk"):
        nargs = {"mmap": 6, "munmap": 2, "brk": 1}[name]
        _tracepoint(tmp_path, f"syscalls:sys_enter_{name}",
                    ["int __syscall_nr"] + [f"unsigned long a{i}" for i in range(nargs)])
        _tracepoint(tmp_path, f"syscalls:sys_exit_{name}", ["int __syscall_nr", "long ret"])
    _tracepoint(tmp_path, "raw_syscalls:sys_enter", ["long id", "unsigned long args[6]"])
    _tracepoint(tmp_path, "raw_syscalls:sys_exit", ["long id", "long ret"])
    return tmp_path


def _plan(tracefs, monkeypatch, *, machine="x86_64", hook=None, hide=None, btf=None, compat=False, ia32=True):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    # compat (ia32) syscalls: off unless a test asks; IA32 emulation as ``ia32`` says
    monkeypatch.setenv("MMTRACE_COMPAT_SYSCALLS", "1" if compat else "0")
    monkeypatch.setattr(K, "kallsyms_has", lambda names, path=None: {n: ia32 for n in names})
    if hook is None:
        monkeypatch.delenv("MMTRACE_SYSCALL_HOOK", raising=False)
    else:
        monkeypatch.setenv("MMTRACE_SYSCALL_HOOK", hook)
    if hide:
        monkeypatch.setenv("MMTRACE_HIDE_TRACEPOINTS", hide)
    else:
        monkeypatch.delenv("MMTRACE_HIDE_TRACEPOINTS", raising=False)
    return K.make_plan(K.Tracefs(str(tracefs)), btf or FakeBtf())


def test_raw_hook_on_request_on_x86_64(tracefs, monkeypatch):
    plan = _plan(tracefs, monkeypatch, hook="raw")
    assert plan.syscall_hook == "raw"
    assert plan.syscalls == {"mmap": 1, "munmap": 2, "brk": 3}
    assert plan.syscall_nargs == {"mmap": 6, "munmap": 2, "brk": 1}
    assert plan.syscall_nr == {"mmap": 9, "munmap": 11, "brk": 12}
    # The trace records what was attached: the raw tracepoints, not the per-syscall ones.
    assert "raw_syscalls:sys_enter" in plan.tracepoints and "raw_syscalls:sys_exit" in plan.tracepoints
    assert not [tp for tp in plan.tracepoints if tp.startswith("syscalls:")]
    flags = plan.cflags()
    assert "-DMMT_SYSCALLS_RAW" in flags
    assert {"-DMMT_NR_mmap=9", "-DMMT_NR_munmap=11", "-DMMT_NR_brk=12", "-DMMT_SC_NARGS_mmap=6"} <= set(flags)
    assert f"-DMMT_TS_COMPAT={K.TS_COMPAT:#x}" in flags
    # The six argument registers, r10 (56) .. di (112), in one read.
    assert plan.windows()["pt_regs"] == (56, 64)
    assert {"-DMMT_WIN_pt_regs_LO=56", "-DMMT_WIN_pt_regs_LEN=64"} <= set(flags)


@pytest.mark.parametrize("hook", [None, "tracepoints"])
def test_tracepoint_hook_by_default(tracefs, monkeypatch, hook):
    plan = _plan(tracefs, monkeypatch, hook=hook)
    assert plan.syscall_hook == "tracepoints" and plan.syscall_nr == {}
    assert "syscalls:sys_enter_mmap" in plan.tracepoints and "raw_syscalls:sys_enter" not in plan.tracepoints
    flags = plan.cflags()
    assert "-DMMT_SYSCALLS_RAW" not in flags and not [f for f in flags if f.startswith("-DMMT_NR_")]
    assert "pt_regs" not in plan.windows()


def test_compat_syscalls_followed_by_default_where_possible(tracefs, monkeypatch):
    plan = _plan(tracefs, monkeypatch, compat=True)
    assert plan.syscall_hook == "tracepoints"
    # the i386 numbers of the followed syscalls (mmap is mmap2; the old mmap comes with it)
    assert plan.syscall_nr32 == {"mmap": 192, "munmap": 91, "brk": 45, "old_mmap": 90}
    assert plan.features["compat_syscalls"] and plan.features["compat_syscalls_missing"] == ""
    assert "raw_syscalls:sys_enter" in plan.tracepoints and "syscalls:sys_enter_mmap" in plan.tracepoints
    flags = set(plan.cflags())
    assert {"-DMMT_COMPAT_SYSCALLS", "-DMMT_NR32_mmap=192", "-DMMT_NR32_old_mmap=90",
            f"-DMMT_TS_COMPAT={K.TS_COMPAT:#x}"} <= flags
    assert "-DMMT_SYSCALLS_RAW" not in flags
    assert {"pt_regs.bx", "pt_regs.bp", "thread_info.status"} <= set(plan.offsets)


@pytest.mark.parametrize(
    "why, message",
    [
        ({"machine": "aarch64"}, "no 32-bit syscall table for aarch64"),
        ({"ia32": False}, "no IA32 emulation"),
        ({"hide": "raw_syscalls:sys_exit"}, "raw_syscalls tracepoints are missing"),
        ({"btf": FakeBtf(lacking={("pt_regs", "bp")})}, "BTF lacks pt_regs.bp"),
    ],
)
def test_compat_syscalls_not_followed_say_why(tracefs, monkeypatch, why, message):
    plan = _plan(tracefs, monkeypatch, compat=True, **why)
    assert plan.syscall_nr32 == {} and not plan.features["compat_syscalls"]
    assert message in plan.features["compat_syscalls_missing"]
    assert "-DMMT_COMPAT_SYSCALLS" not in plan.cflags()


def test_compat_syscalls_off_on_request(tracefs, monkeypatch):
    plan = _plan(tracefs, monkeypatch, compat=False)
    assert plan.features["compat_syscalls_missing"] == "MMTRACE_COMPAT_SYSCALLS=0"


@pytest.mark.parametrize(
    "why, message",
    [
        ({"machine": "aarch64"}, "no syscall table for aarch64"),
        ({"hide": "raw_syscalls:sys_exit"}, "raw_syscalls tracepoints are missing"),
        ({"btf": FakeBtf(lacking={("thread_info", "status")})}, "BTF lacks thread_info.status"),
    ],
)
def test_raw_hook_asked_for_but_unavailable(tracefs, monkeypatch, why, message):
    # An explicit request is not quietly replaced by the other hook.
    with pytest.raises(K.KernelError, match=message):
        _plan(tracefs, monkeypatch, hook="raw", **why)
    # The default still works there.
    why.pop("btf", None)
    assert _plan(tracefs, monkeypatch, **why).syscall_hook == "tracepoints"


def test_bad_hook_name_is_an_error(tracefs, monkeypatch):
    with pytest.raises(K.KernelError, match="MMTRACE_SYSCALL_HOOK"):
        _plan(tracefs, monkeypatch, hook="kprobes")


def test_syscall_numbers_are_x86_64_abi():
    # Fixed by arch/x86/entry/syscalls/syscall_64.tbl; every syscall followed has one.
    table = K.SYSCALL_NR["x86_64"]
    assert set(table) == set(K.SYSCALLS)
    assert (table["mmap"], table["mprotect"], table["munmap"], table["mremap"], table["execve"]) == (9, 10, 11, 25, 59)
    assert len(set(table.values())) == len(table)


def test_hstate_orders_follow_sysfs_creation_order(tmp_path):
    # hugetlb_sysfs_init() makes one directory per hstate in hstates[] order;
    # kernfs (and tmpfs here) number new inodes increasingly
    for name in ("hugepages-1048576kB", "hugepages-2048kB"):
        (tmp_path / name).mkdir()
    assert K.hstate_orders(str(tmp_path)) == [18, 9]
    assert K.hstate_orders(str(tmp_path / "absent")) == []


def test_hugetlb_cgroup_counter_flags():
    plan = K.ProbePlan(kernel_release="x", tracepoints={}, missing=[], syscalls={}, syscall_nargs={},
                       offsets={}, features={"hugetlb": True, "hugetlb_cgroup": {
                           "cgrp_id": 10, "sizeof_page_counter": 192, "hstate_orders": [18, 9]}})
    flags = plan.cflags()
    for f in ("-DMMT_HAVE_HUGETLB_CGROUP", "-DMMT_HUGETLB_CGRP_ID=10", "-DMMT_SIZEOF_page_counter=192",
              "-DMMT_HS_N=2", "-DMMT_HS_ORDERS={18,9}"):
        assert f in flags


def test_compat_off_reason_from_the_session(tracefs, monkeypatch):
    # what capture/session.py compat_reason() says when no target is 32-bit
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("MMTRACE_COMPAT_SYSCALLS", raising=False)
    monkeypatch.setattr(K, "kallsyms_has", lambda names, path=None: {n: True for n in names})
    plan = K.make_plan(K.Tracefs(str(tracefs)), FakeBtf(), compat_off="no 32-bit program")
    assert plan.syscall_nr32 == {} and not plan.features["compat_syscalls"]
    assert plan.features["compat_syscalls_missing"] == "no 32-bit program"
    assert "raw_syscalls:sys_enter" not in plan.tracepoints  # no program at every syscall of the host


def _elf(path, cls: int):
    path.write_bytes(b"\x7fELF" + bytes([cls]) + b"\0" * 59)
    path.chmod(0o755)
    return str(path)


def test_compat_followed_only_where_a_target_needs_it(tmp_path, monkeypatch):
    import os

    from mmtrace.capture.session import Target, compat_reason

    monkeypatch.delenv("MMTRACE_COMPAT_SYSCALLS", raising=False)
    e32, e64 = _elf(tmp_path / "p32", 1), _elf(tmp_path / "p64", 2)
    assert compat_reason(Target(command=[e32])) == ""
    assert "--compat" in compat_reason(Target(command=[e64]))
    assert "--compat" in compat_reason(Target(pids=[os.getpid()]))  # this 64-bit python
    assert compat_reason(Target(command=[e64]), force=True) == ""
    assert compat_reason(Target()) == ""  # the whole system
    monkeypatch.setenv("PATH", str(tmp_path))
    assert compat_reason(Target(command=["p32"])) == ""  # found on PATH, as exec would
    monkeypatch.setenv("MMTRACE_COMPAT_SYSCALLS", "1")
    assert compat_reason(Target(command=[e64])) == ""
    monkeypatch.setenv("MMTRACE_COMPAT_SYSCALLS", "0")
    assert compat_reason(Target(command=[e32])) == "MMTRACE_COMPAT_SYSCALLS=0"
