"""The model against /proc/PID/maps ground truth on real recordings (root; never skipped).

churn: 5 seeds x 1000 ops with forks (some exec), hugetlb on and threads;
demo: the named scenarios (split by mprotect, merge back, hole punch,
MAP_FIXED, mremap grow/move/shrink, file mappings, brk, thread, fork, exec,
hugetlb).  Every checkpoint must match exactly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmtrace.cli.verify import verify
from mmtrace.model import changes, vmas
from mmtrace.trace import TraceFile
from mmtrace.workloads import build
from tests.conftest import raise_hugepages

SEEDS = (1, 2, 3, 4, 5)


def _record(out: Path, argv: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", *argv], check=True)


def _check(trace: Path, cps: Path) -> None:
    res = verify(trace, cps)
    detail = "\n".join(m.describe() for m in res.mismatches[:5])
    assert res.total > 0
    assert res.matched == res.total, f"{res.matched}/{res.total} checkpoints match\n{detail}"


@pytest.mark.parametrize("seed", SEEDS)
def test_churn_checkpoints_match(root_only, tmp_path, seed):
    raise_hugepages(8)
    cps = tmp_path / "cps"
    cps.mkdir()
    trace = tmp_path / "t.trace"
    _record(trace, [str(build("churn")), "--seed", str(seed), "--ops", "1000", "--checkpoints", str(cps),
                    "--forks", "4", "--hugetlb", "on", "--threads"])
    _check(trace, cps)


def test_demo_scenarios(root_only, tmp_path):
    raise_hugepages(8)
    cps = tmp_path / "cps"
    cps.mkdir()
    trace = tmp_path / "t.trace"
    _record(trace, [str(build("demo")), "--checkpoints", str(cps)])
    _check(trace, cps)
    t = TraceFile(trace)
    ch = changes(t)
    kinds = set(ch["kind"])
    for k in ("map", "unmap", "split", "merge", "expand", "shrink", "move", "fork_copy", "exec_setup", "exit"):
        assert k in kinds, (k, sorted(kinds))
    pid = int(t.processes()["pid"].iloc[0])
    # At the end of the trace every process is gone; in the middle the main one has VMAs.
    mid = int(ch["ts"].iloc[len(ch) // 2])
    assert len(vmas(t, pid, mid)) > 0
