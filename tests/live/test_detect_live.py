"""Live: findings on real recordings (root + BCC; never skipped).

Real hugetlb workloads (mprotect/munmap in the middle of a mapping, fork,
MAP_NORESERVE, shared anonymous and memfd hugetlb files) and seeded churn
with hugetlb raise no anomaly and no unmapped-area disagreement; splits and
merges are found where the operations make them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import mmtrace
from mmtrace.events.procmaps import read_checkpoints
from mmtrace.workloads import build
from tests.conftest import raise_hugepages

pytestmark = pytest.mark.live


def _record(out: Path, argv: list[str]) -> mmtrace.Trace:
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", *argv], check=True)
    return mmtrace.open(out)


@pytest.fixture(scope="module")
def hugepages():
    """At least 16 huge pages (raised if lower; never lowered: other users share the pool)."""
    raise_hugepages(16)


def test_hugetlb_scenarios_raise_no_anomaly(root_only, hugepages, tmp_path):
    t = _record(tmp_path / "h.trace", [str(build("hugetlb"))])
    a = t.anomalies()
    assert a.empty, a.to_string()
    h = t.hugetlb()
    assert len(h) >= 10
    first = h[(h["syscall"] == "mmap") & (h["cause"] == "syscall")].iloc[0]
    assert first["model_delta"] == 4
    # the command's own cgroup counter: other users of the pool cannot move it
    ex = h[(h["evidence"] == "cgroup") & h["exact"]]
    assert len(ex) >= 10 and (ex["cg_rsvd"] == ex["model_cg"]).all()
    faults = t.events("fault")
    assert len(faults) >= 4
    # the private mapping was split by its mprotect and by the hole punched in it
    s = t.splits()
    huge = s[s["before"].map(lambda b: any(v["vm_flags"] & 0x00400000 for v in b))]
    assert set(huge["syscall"]) >= {"mprotect", "munmap"}


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_churn_findings(root_only, hugepages, tmp_path, seed):
    cps = tmp_path / "cps"
    cps.mkdir()
    t = _record(tmp_path / "c.trace", [str(build("churn")), "--seed", str(seed), "--ops", "600",
                                       "--checkpoints", str(cps), "--forks", "3", "--hugetlb", "on", "--threads"])
    a = t.anomalies()
    assert a.empty, a.to_string()
    ua = t.unmapped_area_check()
    assert len(ua) > 50 and ua["agrees"].all()
    s, m = t.splits(), t.merges()
    ops = read_checkpoints(cps)["op"].astype(str)
    if (ops == "mprotect-sub").any():
        assert (s["syscall"] == "mprotect").any()
    if (ops == "munmap-sub").any():
        assert (s["syscall"] == "munmap").any()
    if (ops == "mprotect-back").any():
        assert (m["syscall"] == "mprotect").any()
    procs = t.processes()
    assert procs["splits"].sum() == s["count"].sum() and procs["merges"].sum() == m["count"].sum()
    assert s["writes"].str.len().gt(0).mean() > 0.9  # the maple tree writes that showed them


def test_demo_split_and_merge_points(root_only, hugepages, tmp_path):
    cps = tmp_path / "cps"
    cps.mkdir()
    t = _record(tmp_path / "d.trace", [str(build("demo")), "--checkpoints", str(cps)])
    cp = read_checkpoints(cps)
    mid = cp[cp["op"] == "mprotect-middle"]
    ro = mid[mid["perms"] == "r--p"]
    ro = ro[(ro["end"] - ro["start"]) == 4 * 4096].iloc[0]
    s = t.splits()
    hit = s[s["at"].map(lambda a: a == [int(ro["start"]), int(ro["end"])])]
    assert len(hit) == 1 and hit.iloc[0]["syscall"] == "mprotect" and hit.iloc[0]["count"] == 2
    assert "mas_store_prealloc" in hit.iloc[0]["writes"]
    m = t.merges()
    back = m[m["at"].map(lambda a: a == [int(ro["start"]), int(ro["end"])])]
    assert len(back) == 1 and back.iloc[0]["kind"] == "merge"
    assert t.anomalies().empty
