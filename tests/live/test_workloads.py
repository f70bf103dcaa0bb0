"""Live: the bundled C workloads build, run, and leave checkpoints that are
complete, ordered, and show each op's effect on /proc/self/maps.

Needs a C compiler, not root.  Root is used only to make sure 2 MiB huge
pages exist for the hugetlb steps (vm.nr_hugepages raised to 8 if lower,
restored afterwards); without root and without huge pages the hugetlb checks
assert the documented fallbacks instead (demo skips its steps and says so,
``churn --hugetlb on`` refuses to run).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from mmtrace import workloads
from mmtrace.events.procmaps import read_checkpoints

PAGE = os.sysconf("SC_PAGESIZE")
HPAGE = 2 << 20
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
RUN_TIMEOUT = 120


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def bins(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bin")
    return {name: workloads.build(name, cache_dir=d) for name in workloads.NAMES}


@pytest.fixture(scope="module")
def hugepages() -> int:
    """Free 2 MiB huge pages, after raising vm.nr_hugepages to 8 when root."""
    old = int(NR_HUGEPAGES.read_text())
    raised = False
    if os.geteuid() == 0 and old < 8 and _meminfo("Hugepagesize") == 2048:
        NR_HUGEPAGES.write_text("8")
        raised = True
    try:
        yield _meminfo("HugePages_Free") if _meminfo("Hugepagesize") == 2048 else 0
    finally:
        if raised:
            NR_HUGEPAGES.write_text(str(old))


def run(argv: list, **kw) -> subprocess.CompletedProcess:
    """Run to completion; the result also carries the process id as ``.pid``."""
    with subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kw) as p:
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    res = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    res.pid = p.pid
    return res


def check_consistent(df) -> None:
    """Invariants every checkpoint directory must satisfy."""
    for pid, g in df.groupby("pid"):
        cps = g.drop_duplicates("seq")
        seq = cps["seq"].to_numpy()
        assert (seq == np.arange(len(seq))).all(), f"pid {pid}: seq not 0..n-1"
        assert cps["op"].iloc[0] == "start" and cps["op"].iloc[-1] == "end", pid
        tb, ta = cps["t_before"].to_numpy(), cps["t_after"].to_numpy()
        assert (tb <= ta).all(), pid
        assert (ta[:-1] <= tb[1:]).all(), f"pid {pid}: checkpoints out of time order"
        for s, v in g.groupby("seq"):  # every snapshot: sorted, disjoint, non-empty VMAs
            st, en = v["start"].to_numpy(), v["end"].to_numpy()
            assert (st < en).all() and (st[1:] >= en[:-1]).all(), (pid, s)


def vmas(df, pid: int, op: str, occurrence: int = 0) -> set[tuple]:
    """The VMAs (start, end, perms, path) of pid's checkpoint after op."""
    g = df[(df["pid"] == pid) & (df["op"] == op)]
    seqs = sorted(g["seq"].unique())
    assert len(seqs) > occurrence, f"pid {pid} has no checkpoint {op!r}"
    v = g[g["seq"] == seqs[occurrence]]
    return set(zip(v["start"].tolist(), v["end"].tolist(), v["perms"].tolist(), v["path"].tolist()))


def pages(vs) -> list[tuple[int, str]]:
    return [((e - s) // PAGE, p) for s, e, p, _ in sorted(vs)]


# ---- build -------------------------------------------------------------------


def test_build_names_and_reuse(bins, tmp_path):
    for name, exe in bins.items():
        src = workloads.source(name)
        h = hashlib.sha256(src.read_bytes())
        for header in sorted(src.parent.glob("*.h")):  # checkpoint.h is part of every build
            h.update(header.read_bytes())
        digest = h.hexdigest()[:12]
        assert exe.name == f"{name}-{digest}" and os.access(exe, os.X_OK)
        mtime = exe.stat().st_mtime_ns
        assert workloads.build(name, cache_dir=exe.parent) == exe
        assert exe.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not [p for p in exe.parent.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError):
        workloads.source("nope")


def test_build_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(workloads.WorkloadBuildError, match="no-such-cc"):
        workloads.build("demo", cache_dir=tmp_path / "a")
    monkeypatch.setenv("CC", "cc -include /no/such/header.h")
    with pytest.raises(workloads.WorkloadBuildError, match="header.h"):
        workloads.build("demo", cache_dir=tmp_path / "b")
    assert not list((tmp_path / "b").iterdir())  # no half-built binary left


# ---- demo --------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(bins, hugepages, tmp_path_factory):
    d = tmp_path_factory.mktemp("demo-cp")
    proc = subprocess.Popen([str(bins["demo"]), "--checkpoints", str(d)], stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, err
    return proc.pid, read_checkpoints(d), err, hugepages


def test_demo_runs_and_checkpoints(demo):
    pid, df, err, _ = demo
    check_consistent(df)
    pids = df["pid"].unique().tolist()
    assert pid in pids and len(pids) == 2  # parent + forked child (/bin/true writes none)
    ops = df[df["pid"] == pid].drop_duplicates("seq")["op"].tolist()
    assert ops[:19] == [
        "start", "mmap-anon", "mprotect-middle", "mprotect-back", "munmap-hole",
        "mmap-anon-b", "mremap-grow", "mmap-blocker", "mremap-grow-move", "mremap-fixed",
        "mremap-shrink", "mmap-fixed-over", "mmap-file-shared", "mmap-file-private",
        "file-unlink", "brk-grow", "brk-shrink", "thread-mmap-munmap", "fork-wait",
    ]
    assert ops[19] == "fork-exec" and ops[-1] == "end"
    lines = [ln for ln in err.splitlines() if ln.startswith("demo: ")]
    assert len(lines) == len(ops)  # one stderr line per step
    assert "demo: mprotect middle 4 pages of 0x" in err


def test_demo_split_merge_hole(demo):
    pid, df, _, _ = demo
    new = vmas(df, pid, "mmap-anon") - vmas(df, pid, "start")
    assert len(new) == 1
    (a, end, perms, path), = new
    assert (end - a, perms, path) == (16 * PAGE, "rw-p", "")

    def around(op):
        return {v for v in vmas(df, pid, op) if a <= v[0] < a + 16 * PAGE}

    mid = sorted(around("mprotect-middle"))
    assert pages(mid) == [(6, "rw-p"), (4, "r--p"), (6, "rw-p")]
    assert mid[0][0] == a and mid[0][1] == mid[1][0] and mid[1][1] == mid[2][0]  # adjacent
    assert around("mprotect-back") == {(a, a + 16 * PAGE, "rw-p", "")}  # merged back
    hole = sorted(around("munmap-hole"))
    assert pages(hole) == [(7, "rw-p"), (7, "rw-p")] and hole[1][0] - hole[0][1] == 2 * PAGE


def test_demo_mremap_and_fixed(demo):
    pid, df, _, _ = demo
    ops = df[df["pid"] == pid].drop_duplicates("seq")["op"].tolist()

    def step(op):
        """(VMAs gone, VMAs new) across op: against the checkpoint before it."""
        b, x = vmas(df, pid, ops[ops.index(op) - 1]), vmas(df, pid, op)
        return sorted(b - x), sorted(x - b)

    gone, (b,) = step("mmap-anon-b")
    assert not gone and pages([b]) == [(4, "rw-p")]
    gone, added = step("mremap-grow")
    assert gone == [b] and added == [(b[0], b[0] + 8 * PAGE, "rw-p", "")]  # in place
    grown = added[0]
    gone, (blocker,) = step("mmap-blocker")
    assert not gone and blocker[:3] == (grown[1], grown[1] + PAGE, "r--p")
    gone, added = step("mremap-grow-move")
    assert gone == [grown] and len(added) == 1 and added[0][0] != grown[0]  # blocked: moved
    assert added[0][1] - added[0][0] >= 12 * PAGE  # (could have merged with a neighbour)
    gone, added = step("mremap-fixed")
    fixed = [v for v in added if v[1] - v[0] == 12 * PAGE]
    assert len(fixed) == 1 and fixed[0][2] == "rw-p"
    fixed = fixed[0]
    gone, added = step("mremap-shrink")
    assert gone == [fixed] and added == [(fixed[0], fixed[0] + 6 * PAGE, "rw-p", "")]
    gone, added = step("mmap-fixed-over")
    assert pages(added) == [(2, "rw-p"), (2, "r--p"), (2, "rw-p")] and added[0][0] == fixed[0]


def test_demo_file_brk_thread(demo):
    pid, df, _, _ = demo
    deleted = sorted(v for v in vmas(df, pid, "file-unlink") if v[3].endswith(" (deleted)") and "/mmtrace-demo-" in v[3])
    assert sorted(v[2] for v in deleted) == ["rw-p", "rw-s"]
    assert sorted((e - s) // PAGE for s, e, _, _ in deleted) == [2, 4]
    heap = {op: [v for v in vmas(df, pid, op) if v[3] == "[heap]"] for op in ("file-unlink", "brk-grow", "brk-shrink")}
    (h0,), (h1,), (h2,) = heap.values()
    assert h1[0] == h0[0] and h1[1] == h0[1] + 8 * PAGE and h2 == h0
    # the thread's own mmap is gone again; only its (cached) stack remains
    added = vmas(df, pid, "thread-mmap-munmap") - vmas(df, pid, "brk-shrink")
    assert added and all(v[3] == "" for v in added)


def test_demo_fork_child(demo):
    pid, df, err, _ = demo
    (child,) = [p for p in df["pid"].unique().tolist() if p != pid]
    ops = df[df["pid"] == child].drop_duplicates("seq")["op"].tolist()
    assert ops == ["start", "child-mmap", "child-mprotect", "child-munmap", "end"]
    (m,) = vmas(df, child, "child-mmap") - vmas(df, child, "start")
    assert pages([m]) == [(8, "rw-p")]
    split = vmas(df, child, "child-mprotect") - vmas(df, child, "start")
    assert pages(split) == [(2, "r--p"), (6, "rw-p")]
    assert vmas(df, child, "child-munmap") == vmas(df, child, "start")
    # the child ran while the parent waited: its times sit inside the fork step
    cp = df[df["pid"] == pid].drop_duplicates("seq").set_index("op")
    c = df[df["pid"] == child]
    assert cp.loc["thread-mmap-munmap", "t_after"] <= c["t_before"].min()
    assert c["t_after"].max() <= cp.loc["fork-wait", "t_before"]
    # the child's start snapshot is the parent's tree (minus nothing it did)
    assert vmas(df, child, "start") == vmas(df, pid, "thread-mmap-munmap")


def test_demo_hugetlb(demo):
    pid, df, err, free = demo
    ops = df[df["pid"] == pid].drop_duplicates("seq")["op"].tolist()
    if free < 2:
        # documented fallback: steps skipped, said on stderr, still exit 0
        assert "hugetlb-skip" in ops and "skipping hugetlb steps" in err
        pytest.skip(f"only {free} free 2 MiB huge pages and not root: checked the skip path only")
    assert ops[-5:] == ["hugetlb-mmap", "hugetlb-mprotect", "hugetlb-munmap", "hugetlb-noreserve", "end"]
    (h,) = vmas(df, pid, "hugetlb-mmap") - vmas(df, pid, "fork-exec")
    assert h[1] - h[0] == 2 * HPAGE and h[0] % HPAGE == 0 and "anon_hugepage" in h[3]
    split = sorted(vmas(df, pid, "hugetlb-mprotect") - vmas(df, pid, "fork-exec"))
    assert [(e - s, p) for s, e, p, _ in split] == [(HPAGE, "rw-p"), (HPAGE, "r--p")]
    left = sorted(vmas(df, pid, "hugetlb-munmap") - vmas(df, pid, "fork-exec"))
    assert [(s, e - s, p) for s, e, p, _ in left] == [(h[0] + HPAGE, HPAGE, "r--p")]
    (nr,) = vmas(df, pid, "hugetlb-noreserve") - vmas(df, pid, "hugetlb-munmap")
    assert nr[1] - nr[0] == HPAGE and "anon_hugepage" in nr[3]


def test_demo_sleep_and_usage(bins):
    t = time.monotonic()
    r = run([bins["demo"], "--sleep-ms", "10"])
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t >= 0.2  # > 20 steps x 10 ms
    r = run([bins["demo"], "--bogus"])
    assert r.returncode == 2 and "usage" in r.stderr


# ---- churn -------------------------------------------------------------------


def _no_aslr():
    ctypes.CDLL(None, use_errno=True).personality(0x0040000)  # ADDR_NO_RANDOMIZE


def churn_ops(d: Path, only: int | None = None) -> list[list[str]]:
    """The op names of each process (all, or pid ``only``), in order of start."""
    found = []
    for f in d.glob("*.txt"):
        if only is None or int(f.stem) == only:
            cps = re.findall(r"^# checkpoint pid=\d+ seq=\d+ op=(\S+) t_before=(\d+)", f.read_text(), re.M)
            found.append((int(cps[0][1]), [op for op, _ in cps]))
    return [ops for _, ops in sorted(found)]


def test_churn_seed1(bins, hugepages, tmp_path):
    r = run([bins["churn"], "--seed", 1, "--ops", 300, "--forks", 2, "--checkpoints", tmp_path])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # quiet without -v
    df = read_checkpoints(tmp_path)
    check_consistent(df)
    pids = sorted(int(f.stem) for f in tmp_path.glob("*.txt"))
    assert sorted(df["pid"].unique().tolist()) == pids and len(pids) == 3  # parent + 2 children
    parent = r.pid
    cps = df[df["pid"] == parent].drop_duplicates("seq")
    assert len(cps) == 302  # start + 300 ops + end
    ops = cps["op"].tolist()
    # (which of fork / fork-exec depends on the op weights: hugetlb on or not)
    assert len([o for o in ops if o in ("fork", "fork-exec")]) == 2
    # every kind of op happened
    kinds = {o.split(":")[-1] for o in ops}
    for want in ("mmap-anon", "mmap-adj", "mmap-file", "mmap-fixed-over", "mprotect-sub", "mprotect-back",
                 "munmap-sub", "munmap-span", "mremap-grow-moved", "mremap-shrink", "mremap-fixed",
                 "brk-grow", "brk-shrink", "madvise-dontneed", "stack-deep"):
        assert want in kinds, want
    assert any(o.startswith("hugetlb-mmap") for o in ops) == (hugepages > 0)
    # children ran inside their fork step of the parent
    seq_of = dict(zip(cps["seq"], cps["op"]))
    for child in set(pids) - {parent}:
        c = df[df["pid"] == child]
        before = cps[cps["t_after"] <= c["t_before"].min()]["seq"].max()
        after = cps[cps["t_before"] >= c["t_after"].max()]["seq"].min()
        assert after == before + 1 and seq_of[after].startswith("fork"), child
    # madvise(DONTNEED) drops pages, never VMAs: the tree is unchanged
    by_seq = {s: v for s, v in df[df["pid"] == parent].groupby("seq")}
    n = 0
    for s, op in seq_of.items():
        if op == "madvise-dontneed":
            cols = ["start", "end", "perms", "path"]
            assert by_seq[s][cols].values.tolist() == by_seq[s - 1][cols].values.tolist(), s
            n += 1
    assert n > 0


def test_churn_is_deterministic(bins, tmp_path):
    """Same seed, same op sequence in every process (layout fixed: no ASLR)."""
    seqs, parents = [], []
    for i, seed in enumerate((7, 7, 8)):
        d = tmp_path / str(i)
        d.mkdir()
        r = run([bins["churn"], "--seed", seed, "--ops", 200, "--forks", 2, "--hugetlb", "off",
                 "--checkpoints", d], preexec_fn=_no_aslr)
        assert r.returncode == 0, r.stderr
        check_consistent(read_checkpoints(d))
        seqs.append(churn_ops(d))
        parents.append(churn_ops(d, only=r.pid)[0])
    assert seqs[0] == seqs[1]
    assert seqs[0] != seqs[2]
    assert len(parents[0]) == 202 and len(seqs[0]) == 3
    # seed 7 (hugetlb off) takes both child paths: fork, and fork + exec of itself
    assert sorted(o for o in parents[0] if o.startswith("fork")) == ["fork", "fork-exec"]


def test_churn_threads_hugetlb_on(bins, hugepages, tmp_path):
    argv = [bins["churn"], "--seed", 3, "--ops", 300, "--forks", 4, "--threads", "--hugetlb", "on",
            "--checkpoints", tmp_path, "-v"]
    r = run(argv)
    if hugepages == 0:
        assert r.returncode == 2 and "huge pages" in r.stderr  # fails loudly, as documented
        pytest.skip("no 2 MiB huge pages and not root: checked that --hugetlb on refuses to run")
    assert r.returncode == 0, r.stderr[-2000:]
    df = read_checkpoints(tmp_path)
    check_consistent(df)
    ops = df.drop_duplicates(["pid", "seq"])["op"]
    assert ops.str.startswith("thread:").any()
    assert ops.str.contains("hugetlb-mprotect").any() and ops.str.contains("hugetlb-munmap").any()
    assert df["pid"].nunique() == 5
    assert df["path"].str.contains("anon_hugepage").any()
    # -v: one stderr line per op of every process
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("churn[")]) == len(ops) - 2 * 5


def test_churn_usage(bins):
    for bad in (["--seed"], ["--ops", "x"], ["--hugetlb", "maybe"], ["--what"]):
        r = run([bins["churn"], *bad])
        assert r.returncode == 2 and "usage" in r.stderr, bad
