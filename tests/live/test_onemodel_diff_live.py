"""Differential test on live recordings (root): the change model gives identical
changes/splits/merges/counts whatever the window size on churn (forks, execs,
threads, hugetlb), the demo scenarios and a shell pipeline (see
tests/differential.py; before the old path was deleted it compared old and new)."""

from __future__ import annotations

import subprocess
import sys
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
