"""``record -g``: each change's call site names the function that made it (root; never skipped).

tests/live/progs/callsites.c runs one function per kind of change, in the
parent and in a forked child, then dlopens a library that maps and unmaps
and dlcloses it.  Built with gcc -O2 here, so without frame pointers, as
Debian's own binaries are: the call site comes from the word at the user
stack pointer (collectors/stacks.bpf.c), not from the frame-pointer walk.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mmtrace
from mmtrace.events.elf import debuginfo_path
from tests.live.test_real_programs import _cc

PROGS = Path(__file__).resolve().with_name("progs")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(trace, bin dir, lib path) of one `record -g` of the workload."""
    out = tmp_path_factory.mktemp("callsites")
    bins = out / "bin"
    bins.mkdir()
    _cc("-O2", "-Wall", "-o", str(bins / "callsites"), str(PROGS / "callsites.c"), "-ldl")
    _cc("-O2", "-Wall", "-shared", "-fPIC", "-o", str(bins / "libcallsites.so"), str(PROGS / "callsites_lib.c"))
    trace = out / "t.trace"
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-g", "-q", "-o", str(trace), "--",
                    str(bins / "callsites"), str(bins / "libcallsites.so")], check=True, stdout=subprocess.DEVNULL)
    return trace, bins


def _by_function(ch, pid):
    """{(syscall, kind): set of callsite functions} of the workload's own calls in ``pid``."""
    out: dict = {}
    own = ch[(ch["pid"] == pid) & ch["syscall"].isin(["mmap", "mprotect", "munmap"])]
    for sc, kind, site in zip(own["syscall"], own["kind"], own["callsite"].astype(str)):
        out.setdefault((sc, kind), set()).add(site)
    return out


def _check_sites(t) -> None:
    ch = t.changes()
    assert {"stack_id", "callsite"} <= set(ch.columns)
    procs = t.processes()
    main = procs[procs["comm"].astype(str) == "callsites"]
    assert len(main) == 2, procs[["pid", "ppid", "comm"]]
    parent = int(main[main["ppid"] != main["pid"].max()]["pid"].min())
    child = int(main["pid"].max())
    for pid, n in ((parent, 20), (child, 10)):
        own = ch[ch["pid"] == pid]
        for fn, sc in (("only_mmap", "mmap"), ("only_mprotect", "mprotect"), ("only_munmap", "munmap")):
            site = own["callsite"].astype(str)
            mine = own[site.str.startswith(fn + "+0x") & site.str.endswith("(callsites)")]
            # every change this function made is its syscall's, and there are n of them at least
            assert len(mine) >= n, (pid, fn, own[["syscall", "kind", "callsite"]].value_counts())
            assert set(mine["syscall"]) == {sc}, (pid, fn, set(mine["syscall"]))
        splits = own[own["kind"] == "split"]
        work = splits[splits["callsite"].astype(str).str.contains(r"\(callsites\)")]
        assert set(work["callsite"].astype(str).str.split("+").str[0]) == {"only_mprotect"}, work["callsite"]
    # the dlopen'ed (then dlclose'd) library's calls
    lib = ch[ch["callsite"].astype(str).str.match(r"lib_only_mmap\+0x[0-9a-f]+ \(libcallsites\.so\)")]
    assert len(lib) >= 10 and set(lib["syscall"]) == {"mmap", "munmap"}, lib[["syscall", "kind", "callsite"]]
    assert (lib["pid"] == parent).all()


def test_callsites_name_the_functions(root_only, recorded):
    trace, bins = recorded
    t = mmtrace.open(trace)
    assert t.metadata["stacks"]["enabled"] and t.metadata["stacks"]["distinct"] > 0
    assert not t.metadata["stacks"]["lost"].get("EEXIST")
    _check_sites(t)
    # the library was unmapped before the end: no stop snapshot shows it
    snaps = t.snapshots()
    assert not snaps["path"].astype(str).str.contains("libcallsites").any()
    # the stack frames: the wrapper first (libc), then the recovered caller
    st = t.stacks()
    assert {"stack_id", "depth", "symbol", "build_id", "offset", "recovered"} <= set(st.columns)
    rec = st[st["recovered"]]
    assert (rec["depth"] == 1).all() and rec["function"].isin(["only_mmap", "only_mprotect", "only_munmap"]).any()
    cs = t.callsites()
    top = cs.set_index("function")
    assert top.loc["only_mprotect", "splits"] >= 30 and top.loc["only_mprotect", "pids"] == 2
    assert top.loc["only_mmap", "bytes_mapped"] > 0
    assert list(t.callsites("split")["function"])[0] == "only_mprotect"


def test_callsites_with_symfs(root_only, recorded, tmp_path):
    """The binaries moved away: without --symfs the workload's frames have no symbol; with a
    copy under --symfs they are the same as where they were recorded."""
    trace, bins = recorded
    before = mmtrace.open(trace).changes()["callsite"].astype(str).tolist()
    t0 = mmtrace.open(trace)
    symfs = tmp_path / "symfs"
    named = set(t0.table("procfs/files")["path"].astype(str)) | set(t0.snapshots()["path"].astype(str))
    # and their debuginfo where installed (Debian's libc6-dbg has ld.so's local symbols)
    named |= {str(p) for p in (debuginfo_path(b) for b in t0.stacks()["build_id"].astype(str).unique()) if p}
    for f in sorted(named):
        if f.startswith("/") and Path(f).is_file():
            dest = symfs / f.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
    moved = bins.with_name("bin.moved")
    bins.rename(moved)
    try:
        gone = mmtrace.open(trace)
        sites = gone.changes()["callsite"].astype(str)
        assert not sites.str.startswith("only_mprotect+").any()
        t = mmtrace.open(trace)
        t.symfs = str(symfs)
        assert t.changes()["callsite"].astype(str).tolist() == before
        _check_sites(t)
        out = tmp_path / "report"
        r = subprocess.run([sys.executable, "-m", "mmtrace", "report", "-q", "--folded", "--symfs", str(symfs),
                            "-o", str(out), str(trace)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        folded = (out / "callsites.folded").read_text()
        assert any(line.split(";")[-2].startswith("only_mprotect+") for line in folded.splitlines()
                   if line.count(";") >= 1), folded
        assert "only_mprotect" in (out / "callsites.csv").read_text()
        page = (out / "index.html").read_text()
        assert "Who changed the address space" in page and "only_mprotect+" in page
        # the Perfetto export: each change instant carries its call site
        from tests.golden.test_perfetto import read_back

        pf = tmp_path / "t.pftrace"
        r = subprocess.run([sys.executable, "-m", "mmtrace", "export", "--perfetto", "--symfs", str(symfs),
                            "-o", str(pf), str(trace)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        _, events, _, _ = read_back(pf)
        sites = [ann["callsite"].string_value for evs in events.values() for *_, ann, _ in evs if "callsite" in ann]
        assert any(x.startswith("only_mprotect+") for x in sites), sites[:20]
    finally:
        moved.rename(bins)
