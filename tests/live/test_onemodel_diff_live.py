"""Differential test on live recordings (root): the change model gives identical
changes/splits/merges/counts whatever the window size on churn (forks, execs,
threads, hugetlb), the demo scenarios and a shell pipeline (see
tests/differential.py; before the old path was deleted it compared old and new)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import mmtrace
from mmtrace.workloads import build
from tests.differential import assert_same
from tests.conftest import raise_hugepages


def _record(out: Path, argv: list[str]) -> mmtrace.Trace:
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", *argv], check=True)
    return mmtrace.open(out)


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_churn_windows_agree(root_only, tmp_path, seed):
    raise_hugepages(8)
    t = _record(tmp_path / "t.trace", [str(build("churn")), "--seed", str(seed), "--ops", "1500", "--forks", "4",
                                       "--hugetlb", "on", "--threads"])
    assert assert_same(t) > 1000


def test_demo_windows_agree(root_only, tmp_path):
    raise_hugepages(8)
    cps = tmp_path / "cps"
    cps.mkdir()
    t = _record(tmp_path / "t.trace", [str(build("demo")), "--checkpoints", str(cps)])
    assert assert_same(t) > 30


def test_shell_pipeline_windows_agree(root_only, tmp_path):
    """A real program mix: a shell that forks and execs coreutils."""
    t = _record(tmp_path / "t.trace", ["/bin/sh", "-c", "ls -l /usr/bin | sort | head -3 >/dev/null; cat /etc/os-release | wc -l"])
    assert assert_same(t) > 20


def test_streamed_report_is_the_whole_frame_one_live(root_only, tmp_path):
    """The streamed report (one pass, tables appended per window) against the
    whole-frame one on churn with forks, threads and hugetlb (windows of 97 tree
    writes) and a shell pipeline (the default window: with tiny windows an exec's
    setup stays open across several window ends and is written where it ends)."""
    from tests.report_differential import assert_same_report

    raise_hugepages(8)
    t = _record(tmp_path / "t.trace", [str(build("churn")), "--seed", "2", "--ops", "1500", "--forks", "4",
                                       "--hugetlb", "on", "--threads"])
    assert assert_same_report(t.path, tmp_path / "r", window=97) > 1000
    sh = _record(tmp_path / "sh.trace", ["/bin/sh", "-c", "ls -l /usr/bin | sort | head -3 >/dev/null"])
    assert assert_same_report(sh.path, tmp_path / "r2") > 20


def test_vma_timeline_is_the_model_live(root_only, tmp_path):
    """VMA counts and lifetimes from the changes pass against the model
    (tests/timeline_differential.py; before the second replay was deleted it
    compared both frames whole) on churn with forks, threads and hugetlb
    (windows of 97 tree writes: changes across window ends), a Python that
    starts programs by vfork (a child bound to its parent's tree while the
    parent's last change is still open) and a process attached while running
    (its /proc snapshot VMAs named later with their pointers)."""
    from tests.timeline_differential import assert_timeline_is_the_model

    raise_hugepages(8)
    t = _record(tmp_path / "t.trace", [str(build("churn")), "--seed", "3", "--ops", "1500", "--forks", "4",
                                       "--hugetlb", "on", "--threads"])
    assert assert_timeline_is_the_model(t.path, tmp_path / "r", window=97) > 2000
    py = _record(tmp_path / "py.trace", [sys.executable, "-c", "import subprocess; subprocess.run(['/bin/true']); "
                                         "subprocess.run(['/bin/ls', '/'], capture_output=True)"])
    for w in (None, 97):
        assert assert_timeline_is_the_model(py.path, tmp_path / f"r-py-{w}", window=w) > 100
    prog = ("import mmap, os, time\n"
            "for i in range(3000):\n"
            "    m = mmap.mmap(-1, 4096 * (1 + i % 7)); m[0] = 1; m.close()\n"
            "    if i % 500 == 0:\n"
            "        p = os.fork()\n"
            "        if p == 0: os._exit(0)\n"
            "        os.waitpid(p, 0)\n"
            "    time.sleep(0.001)\n")
    bg = subprocess.Popen([sys.executable, "-c", prog])
    try:
        time.sleep(0.5)
        subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(tmp_path / "att.trace"), "-p",
                        str(bg.pid), "--duration", "2"], check=True)
    finally:
        bg.wait()
    att = mmtrace.open(tmp_path / "att.trace")
    assert (att.snapshots()["when"] == "attach").any()
    assert assert_timeline_is_the_model(att.path, tmp_path / "r-att") > 1000


def test_unmapped_area_check_is_the_stepped_one_live(root_only, tmp_path):
    """The unmapped-area check answered by one replay (alone, and by the changes
    pass at windows of None, 97 and 5 tree writes) against the old stepped replay
    (tests/unmapped_area_differential.py) on churn with forks, threads and hugetlb
    and a shell pipeline (execs: the search runs on the new mm)."""
    from tests.unmapped_area_differential import assert_same_check

    raise_hugepages(8)
    t = _record(tmp_path / "t.trace", [str(build("churn")), "--seed", "4", "--ops", "1500", "--forks", "4",
                                       "--hugetlb", "on", "--threads"])
    assert assert_same_check(t.path) > 100
    sh = _record(tmp_path / "sh.trace", ["/bin/sh", "-c", "ls -l /usr/bin | sort | head -3 >/dev/null"])
    assert assert_same_check(sh.path) > 10


_MANY_VMAS = """
import mmap
# 1,500 one-page VMAs back to back (protections alternate: none merges), then
# mappings made and dropped beside them, a few of them growing down: the
# search walks past the whole run of touching VMAs and meets stack-like
# neighbours (first_fit_pieces)
keep = [mmap.mmap(-1, 4096, prot=mmap.PROT_READ if i % 2 else mmap.PROT_READ | mmap.PROT_WRITE)
        for i in range(1500)]
for i in range(600):
    m = mmap.mmap(-1, 4096 * (1 + i % 7))
    if i % 3 == 0:
        keep.append(m)
    else:
        m.close()
"""


def test_unmapped_area_check_on_a_big_tree_is_the_stepped_one_live(root_only, tmp_path):
    """The same against the stepped replay on a tree of ~1,600 VMAs (the old
    search joined and scanned them all per event; the new one bisects and
    skips touching pieces), the interpreter's own mappings included."""
    from tests.unmapped_area_differential import assert_same_check

    t = _record(tmp_path / "big.trace", [sys.executable, "-c", _MANY_VMAS])
    assert assert_same_check(t.path, windows=(None, 97)) > 600
    assert int(mmtrace.open(t.path).unmapped_area_check()["vmas"].max()) > 1500


def test_write_sequences_are_the_rows_ones_live(root_only, tmp_path):
    """The splits' and merges' ``writes`` made columnar against the old row-by-row
    loop (tests/structure_differential.py) on churn with forks and threads
    (several threads' writes inside one change's span)."""
    from tests.structure_differential import assert_same_writes

    t = _record(tmp_path / "t.trace", [str(build("churn")), "--seed", "5", "--ops", "1500", "--forks", "4",
                                       "--threads"])
    assert assert_same_writes(t.path) > 1000


def test_report_brk_ends_agree_live(root_only, tmp_path):
    """The report's [heap] naming reads only the brk rows, part by part (report/views._brk_of):
    the same ends as the whole syscall table gave, on real programs that grow their heaps."""
    from mmtrace.report import views
    from mmtrace.report.frames import report_data
    from tests.golden.test_views_differential import old_brk_of

    t = _record(tmp_path / "t.trace", ["/bin/sh", "-c", "ls -lR /usr/include | sort | uniq -c | sort -n | tail -2 >/dev/null"])
    new = views._brk_of(report_data(t))
    assert new == old_brk_of(t)
    assert sum(len(v) for v in new.values()) >= 3  # sort grows its heap: there is something to compare


def test_report_lifetimes_are_the_old_sorted_frame_live(root_only, tmp_path):
    """ReportData.vmas (gathered sorted from the timeline's table) against the old
    build-then-sort, on churn with forks, threads and hugetlb and on a shell pipeline."""
    import pandas as pd

    from mmtrace.report.frames import report_data
    from tests.golden.test_sweep_differential import old_lifetimes

    raise_hugepages(8)
    for name, argv in (("churn", [str(build("churn")), "--seed", "3", "--ops", "1500", "--forks", "4", "--hugetlb", "on",
                                  "--threads"]),
                       ("sh", ["/bin/sh", "-c", "ls -l /usr/bin | sort | head -3 >/dev/null"])):
        t = _record(tmp_path / f"{name}.trace", argv)
        new = report_data(t).vmas()
        assert len(new) > 20
        pd.testing.assert_frame_equal(new, old_lifetimes(report_data(mmtrace.open(t.path))), check_exact=True)
