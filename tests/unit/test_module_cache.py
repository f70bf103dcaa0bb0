"""The compiled-module cache (capture/loader.py) and the bytecode relocation
(capture/compile.py), on literal inputs: no root, no BCC."""

from __future__ import annotations

import os
import struct

import pytest

from mmtrace.capture import loader
from mmtrace.capture.compile import map_relocations
from mmtrace.capture.kernel import ProbePlan


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def test_map_relocations_finds_map_fds_and_skips_the_second_slot():
    insns = (_insn(0xB7, 1, imm=5)  # mov r1, 5
             + _insn(0x18, 1, 1, imm=7) + _insn(0, imm=0)  # ld_imm64 r1, map fd 7
             + _insn(0x18, 2, 0, imm=9) + _insn(0, imm=7)  # plain 64-bit constant: not a map
             + _insn(0x18, 3, 2, imm=11) + _insn(0, imm=16)  # map value of fd 11
             + _insn(0x95))  # exit
    assert map_relocations(insns, {7: 0, 11: 3}) == [[1, 0], [5, 3]]


def test_map_relocations_refuses_what_it_cannot_replay():
    with pytest.raises(ValueError, match="not one of the module's maps"):
        map_relocations(_insn(0x18, 1, 1, imm=8) + _insn(0), {7: 0})
    with pytest.raises(ValueError, match="src_reg 3"):  # BPF_PSEUDO_BTF_ID
        map_relocations(_insn(0x18, 1, 3, imm=8) + _insn(0), {7: 0})


def test_patch_kfunc_calls_turns_placeholder_helper_calls_into_kfunc_calls():
    from mmtrace.capture.bpfsys import patch_kfunc_calls
    from mmtrace.capture.kernel import KFUNC_PLACEHOLDER

    ph = KFUNC_PLACEHOLDER["rdonly_cast"]
    code = bytearray(_insn(0xB7, 2, imm=284)  # r2 = a BTF id
                     + _insn(0x85, imm=ph)  # the placeholder, as BCC compiles it
                     + _insn(0x85, imm=6)  # a real helper (bpf_trace_printk): left alone
                     + _insn(0x85, src=1, imm=ph)  # a BPF-to-BPF call (src 1) with that imm: left alone
                     + _insn(0xB7, 0, imm=ph)  # the number as a constant: left alone
                     + _insn(0x85, imm=ph) + _insn(0x95))
    assert patch_kfunc_calls(code, {ph: 65425}) == 2
    want = (_insn(0xB7, 2, imm=284) + _insn(0x85, src=2, imm=65425) + _insn(0x85, imm=6)
            + _insn(0x85, src=1, imm=ph) + _insn(0xB7, 0, imm=ph) + _insn(0x85, src=2, imm=65425) + _insn(0x95))
    assert bytes(code) == want
    assert patch_kfunc_calls(code, {ph: 65425}) == 0  # idempotent: nothing left to patch


def test_plan_cflags_of_direct_reads():
    plain = _plan().cflags()
    assert not [f for f in plain if "TP_BTF" in f or "rdonly_cast" in f or "MMT_BTF_" in f]
    flags = _plan(features={"tp_btf": {"ma_write": 1}, "rdonly_cast": {"func": 7, "vm_area_struct": 9}}).cflags()
    assert "-DMMT_TP_BTF" in flags and "-DMMT_BTF_vm_area_struct=9" in flags
    assert f"-DMMT_KF_rdonly_cast={0x7F00}" in flags


def _plan(**kw) -> ProbePlan:
    base = dict(kernel_release="x", tracepoints={"maple_tree:ma_write": []}, missing=[], syscalls={"mmap": 1},
                syscall_nargs={"mmap": 6}, offsets={"task_struct.mm": 8})
    base.update(kw)
    return ProbePlan(**base)


def test_cache_key_follows_what_the_module_depends_on():
    k = loader.cache_key("src", ["-DA"], _plan())
    assert k == loader.cache_key("src", ["-DA"], _plan())
    assert k != loader.cache_key("src2", ["-DA"], _plan())
    assert k != loader.cache_key("src", ["-DB"], _plan())
    assert k != loader.cache_key("src", ["-DA"], _plan(tracepoints={"maple_tree:ma_write": [{"name": "fn"}]}))
    assert k != loader.cache_key("src", ["-DA"], _plan(headers="/elsewhere"))


def test_cache_round_trip_and_only_private_entries_are_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTRACE_CACHE_DIR", str(tmp_path / "c"))
    m = {"format": loader.MANIFEST_FORMAT, "maps": [], "progs": [], "license": "GPL", "kern_version": 0, "btf": None}
    assert loader._cache_read("k1") is None
    loader._cache_write("k1", m)
    assert loader._cache_read("k1") == {**m, "key": "k1"}
    f = tmp_path / "c" / "k1.json"
    assert f.stat().st_mode & 0o777 == 0o600
    # Anyone else could have written it: programs root would load. Ignored.
    os.chmod(f, 0o620)
    assert loader._cache_read("k1") is None
    os.chmod(f, 0o600)
    os.chmod(tmp_path / "c", 0o777)
    assert loader._cache_read("k1") is None
    os.chmod(tmp_path / "c", 0o700)
    # Another key's entry under this key's name is not this module.
    os.replace(f, tmp_path / "c" / "k2.json")
    assert loader._cache_read("k2") is None
    (tmp_path / "c" / "k3.json").write_text("{not json")
    os.chmod(tmp_path / "c" / "k3.json", 0o600)
    assert loader._cache_read("k3") is None
