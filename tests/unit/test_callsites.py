"""Call sites without root: exports of a literal stack table, the cause join, ELF lookups."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from mmtrace.capture.stacks import FileNotes, StackTable
from mmtrace.events.schema import stack_errors
from mmtrace.detect.callsites import FRAME_COLUMNS, _cause_join, alive_at_end, folded, speedscope
from mmtrace.events.elf import ElfSymbols, build_id, find_by_inode, is_call_before, kdev


def _frames(stacks: dict[int, list[str]]) -> pd.DataFrame:
    """A literal stack table: stack_id -> symbols, innermost first."""
    rows = []
    for sid, syms in stacks.items():
        for depth, s in enumerate(syms):
            rows.append({"stack_id": sid, "depth": depth, "address": 0x1000 + depth, "path": "/x", "build_id": "",
                         "offset": depth, "function": s.split("+")[0], "func_offset": 0, "symbol": s,
                         "binary": "x", "recovered": depth == 1})
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


STACKS = {
    0: ["__mmap+0x13 (libc.so.6)", "only_mmap+0x23 (w)", "main+0x10 (w)"],
    1: ["__mprotect+0x7 (libc.so.6)", "only_mprotect+0x1a (w)", "main+0x20 (w)"],
    2: ["__munmap+0x7 (libc.so.6)", "odd;name+0x1 (w)"],
}


def test_folded_literal():
    out = folded(_frames(STACKS), {0: 3, 1: 5, 2: 1, 7: 9})
    assert out == (
        "main+0x10 (w);only_mmap+0x23 (w);__mmap+0x13 (libc.so.6) 3\n"
        "main+0x20 (w);only_mprotect+0x1a (w);__mprotect+0x7 (libc.so.6) 5\n"
        "odd:name+0x1 (w);__munmap+0x7 (libc.so.6) 1\n"
    )
    assert folded(_frames(STACKS), {}) == ""


def test_speedscope_literal():
    doc = speedscope(_frames(STACKS), {0: 3, 1: 5}, name="t")
    json.dumps(doc)  # serialisable as is
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    names = [f["name"] for f in doc["shared"]["frames"]]
    (prof,) = doc["profiles"]
    assert prof["type"] == "sampled" and prof["unit"] == "none"
    assert prof["weights"] == [3, 5] and prof["endValue"] == 8
    stacks = [[names[i] for i in s] for s in prof["samples"]]
    assert stacks == [STACKS[0][::-1], STACKS[1][::-1]]  # root first
    assert len(names) == len(set(names)) == 6  # each frame once


def test_cause_join():
    ch = pd.DataFrame({"ts": [100, 205, 300, 400, 510], "tid": [7, 7, 8, 9, 0], "pid": [7, 7, 8, 9, 7],
                       "cause": ["mmap", "mprotect", "fork_copy", "mmap", "exit"]})

    class St:
        events = pd.DataFrame({
            "kind": ["syscall", "syscall", "proc", "proc", "syscall"],
            "ts": [150, 210, 320, 505, 395], "ts_enter": [90, 200, 320, 505, 390],
            "tgid": [7, 7, 8, 7, 9], "tid": [7, 7, 8, 7, 9], "what": ["mmap", "mprotect", "fork", "exit", "mmap"],
            "stack_id": [1, 2, 3, 4, 5]})

    # the change at 400 is after its thread's syscall exited (395): no stack
    assert _cause_join(None, ch, St()).tolist() == [1, 2, 3, -1, 4]


def test_alive_at_end():
    ch = pd.DataFrame({
        "pid": [1, 1, 1, 2], "kind": ["map", "split", "exit", "map"],
        "before_vmas": [[], [(0, 8, 0xA, 0)], [(0, 4, 0xA, 0), (4, 8, 0xB, 0)], []],
        "after_vmas": [[(0, 8, 0xA, 0)], [(0, 4, 0xA, 0), (4, 8, 0xB, 0)], [], [(0, 8, 0xA, 0)]],
    })
    assert alive_at_end(ch).tolist() == [0, 2, 0, 1]


def test_stack_table_reads_each_id_once():
    class Map:
        max_entries = 16
        calls = []

        def get(self, key):
            self.calls.append(int.from_bytes(key, "little"))
            sid = int.from_bytes(key, "little")
            return None if sid == 9 else np.array([0x10 + sid, 0x20, 0, 0], "<u8").tobytes()

    st = StackTable(Map())
    t = st.note(np.array([3, 3, -1, -17, 5, 9, -14], np.int32))
    assert t.column("stack_id").to_pylist() == [3, 5]
    assert t.column("frames").to_pylist() == [[0x13, 0x20], [0x15, 0x20]]
    assert st.note(np.array([3, 5], np.int32)) is None
    assert Map.calls == [3, 5, 9]
    assert st.stats()["lost"] == {"EEXIST": 1, "EFAULT": 1, "ENOENT": 1} and st.stats()["captured"] == 6
    assert stack_errors(np.array([-1, -1])) == {}


def test_is_call_before():
    assert is_call_before(bytes([0, 0, 0xE8, 1, 2, 3, 4]))  # call rel32
    assert is_call_before(bytes([0, 0, 0, 0, 0, 0xFF, 0xD0]))  # call *%rax
    assert is_call_before(bytes([0, 0, 0, 0, 0x41, 0xFF, 0xD4]))  # call *%r12
    assert is_call_before(bytes([0, 0xFF, 0x15, 1, 2, 3, 4]))  # call *disp32(%rip)
    assert is_call_before(bytes([0, 0, 0, 0, 0xFF, 0x50, 0x08]))  # call *0x8(%rax)
    assert not is_call_before(bytes([0x48, 0x89, 0xC7, 0x0F, 0x05, 0x90, 0x90]))
    assert not is_call_before(bytes(7))


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    cc = shutil.which("gcc")
    assert cc, "setup.sh installs gcc"
    d = tmp_path_factory.mktemp("elf")
    src = d / "f.c"
    src.write_text("__attribute__((noinline)) int alpha(int x) { return x * 3 + 1; }\n"
                   "__attribute__((noinline)) int beta(int x) { return alpha(x) + 2; }\n"
                   "int main(int c, char **v) { return beta(c); }\n")
    exe = d / "f"
    subprocess.run([cc, "-O1", "-Wl,--build-id", "-o", str(exe), str(src)], check=True)
    return exe


def test_elf_symbols_by_file_offset(elf):
    e = ElfSymbols.load(elf, debug_root=None)
    nm = subprocess.run(["nm", "--defined-only", str(elf)], capture_output=True, text=True).stdout
    addr = {line.split()[2]: int(line.split()[0], 16) for line in nm.splitlines() if len(line.split()) == 3}
    ro = subprocess.run(["readelf", "-lW", str(elf)], capture_output=True, text=True).stdout
    loads = [ln.split() for ln in ro.splitlines() if ln.strip().startswith("LOAD")]
    off, va = next((int(x[1], 16), int(x[2], 16)) for x in loads if "E" in x[-2] or "E" in x[-3])
    for name in ("alpha", "beta", "main"):
        fo = addr[name] - va + off
        assert e.symbolize(fo) == (name, 0)
        assert e.symbolize(fo + 1) == (name, 1)
    assert len(e.build_id) == 40 and e.build_id == build_id(elf)
    assert e.read(0, 4) == b"\x7fELF"
    e.close()
    assert build_id(elf.with_name("nope")) == ""
    with pytest.raises(ValueError):
        ElfSymbols.load(elf.with_name("f.c"))


def test_find_by_inode(elf):
    st = elf.stat()
    key = (kdev(st.st_dev), st.st_ino)
    missing = {key, (1, 2)}
    assert find_by_inode(missing, {str(elf.parent), "/nonexistent"}) == {key: (str(elf), "")}
    assert missing == {(1, 2)}


def test_file_notes_search_missed(elf):
    notes = FileNotes()
    st = elf.stat()
    key = (kdev(st.st_dev), st.st_ino)
    notes.missed[key] = (5, 42)
    notes.note_exec([str(elf).encode()])
    notes.search_missed()
    t = notes.take()
    assert t.column("path").to_pylist() == [str(elf)] and t.column("pid").to_pylist() == [42]
    assert t.column("build_id").to_pylist() == [build_id(elf)]
    assert notes.take() is None
