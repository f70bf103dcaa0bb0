"""Where ``write`` and ``success`` are in the mmap_lock tracepoints' arguments.

6.1's TP_PROTO has a ``memcg_path`` argument before ``write``; this host's
does not.  Reading ``ctx->args[1]`` as ``write`` on 6.1 (the pointer's low
byte) kept every read unlock and dropped most write unlocks, which moved
in-place mprotects before their own splits (seen on the 6.1 guest: 876/1104
checkpoints).  ``capture.kernel._mmap_lock_args`` takes the positions from
BTF's ``btf_trace_<name>`` typedef.
"""

from __future__ import annotations

import pytest

from mmtrace.capture.btf import Btf, BtfError
from mmtrace.capture.kernel import _mmap_lock_args

MM, BOOL, STR = "pointer to struct mm_struct", "int _Bool", "pointer to int char"
ACQ, REL = "mmap_lock:mmap_lock_acquire_returned", "mmap_lock:mmap_lock_released"


class FakeBtf:
    def __init__(self, protos: dict[str, list[str]]):
        self.protos = protos

    def tracepoint_args(self, name: str) -> list[str]:
        if name not in self.protos:
            raise BtfError(name)
        return self.protos[name]


def _plan(protos):
    tps, missing = {ACQ: [], REL: []}, []
    return _mmap_lock_args(FakeBtf(protos), tps, missing), sorted(tps), missing


def test_61_prototype_has_memcg_path_first():
    args, tps, missing = _plan({"mmap_lock_acquire_returned": [MM, STR, BOOL, BOOL],
                                "mmap_lock_released": [MM, STR, BOOL]})
    assert args == {"acquire_write": 2, "acquire_success": 3, "released_write": 2}
    assert tps == [ACQ, REL] and missing == []


def test_newer_prototype_without_memcg_path():
    args, _, missing = _plan({"mmap_lock_acquire_returned": [MM, BOOL, BOOL],
                              "mmap_lock_released": [MM, BOOL]})
    assert args == {"acquire_write": 1, "acquire_success": 2, "released_write": 1}
    assert missing == []


@pytest.mark.parametrize("protos", [
    {"mmap_lock_released": [MM, BOOL]},                                   # no acquire typedef
    {"mmap_lock_acquire_returned": [MM, BOOL], "mmap_lock_released": [MM, BOOL]},  # no success bool
    {"mmap_lock_acquire_returned": [STR, BOOL, BOOL], "mmap_lock_released": [MM, BOOL]},  # not mm first
])
def test_unknown_prototype_drops_both(protos):
    args, tps, missing = _plan(protos)
    assert args == {} and tps == [] and sorted(missing) == [ACQ, REL]


def test_cflags_carry_the_positions():
    from mmtrace.capture.kernel import ProbePlan

    plan = ProbePlan(kernel_release="x", tracepoints={}, missing=[], syscalls={}, syscall_nargs={}, offsets={},
                     features={"mmap_lock_args": {"acquire_write": 2, "acquire_success": 3, "released_write": 2}},
                     headers=None)
    fl = plan.cflags()
    assert {"-DMMT_ML_ARG_acquire_write=2", "-DMMT_ML_ARG_acquire_success=3",
            "-DMMT_ML_ARG_released_write=2"} <= set(fl)


def test_this_kernels_btf_names_mm_first():
    args = Btf.load().tracepoint_args("mmap_lock_released")
    assert args[0] == MM and BOOL in args
    with pytest.raises(BtfError):
        Btf.load().tracepoint_args("no_such_tracepoint_anywhere")
