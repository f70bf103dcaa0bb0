"""Live: a fleet of real recordings analysed on a 2-worker Dask LocalCluster (root + BCC).

Three small real workloads are recorded once per session with the real
recorder (churn with a fork, churn with threads, the demo).  The fleet is
12 COPIES of them whose metadata.json is REWRITTEN to five host names and
three kernel releases (the copies say so in ``metadata["test_copy"]`` and
in their directory names: ``rewritten-copy-NN-HOST.trace``), plus the
checked-in SYNTHETIC trace (labelled so in its metadata; it gives the
anomalies table rows), one trace with a damaged Parquet part and one whose
metadata.json is truncated.  Every fleet table must equal the concatenation
of the per-trace tables (pandas.testing), the broken trace must be
reported with its path and reason and skipped, the damaged one reported as
damaged, not as fine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import mmtrace
import mmtrace.fleet as fleet
from mmtrace.events.decode import empty_frame
from mmtrace.events.schema import LATER_FIELDS
from mmtrace.report import ReportData, table
from mmtrace.workloads import build

pytestmark = pytest.mark.live

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "data"
HOSTS = [f"rewritten-host-{c}" for c in "abcde"]
KERNELS = ["6.1.0-rewritten-for-test", "6.12.9-rewritten-for-test", None]  # None: keep the recorded release
N_COPIES = 12


def _record(out: Path, argv: list[str]) -> Path:
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", *argv], check=True,
                   timeout=180)
    return out


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> list[Path]:
    """Three real recordings (root: the real recorder on real tracepoints)."""
    import os

    assert os.geteuid() == 0, "live tests need root (CI runs them as root)"
    d = tmp_path_factory.mktemp("fleet-rec")
    churn = str(build("churn"))
    return [
        _record(d / "churn-fork.trace", [churn, "--seed", "31", "--ops", "300", "--forks", "1", "--hugetlb", "off"]),
        _record(d / "churn-threads.trace", [churn, "--seed", "32", "--ops", "200", "--forks", "0", "--threads",
                                            "--hugetlb", "off"]),
        _record(d / "demo.trace", [str(build("demo"))]),
    ]


def _copy(src: Path, dst: Path, host: str, kernel: str | None, i: int) -> Path:
    shutil.copytree(src, dst)
    meta_path = dst / "metadata.json"
    m = json.loads(meta_path.read_text())
    m["test_copy"] = {"of": str(src), "note": "COPY of a real recording; host, boot_id and kernel_release "
                      "REWRITTEN for the fleet tests",
                      "recorded": {k: m.get(k) for k in ("host", "boot_id", "kernel_release")}}
    m["host"] = host
    m["boot_id"] = str(uuid.UUID(int=i + 1))
    if kernel:
        m["kernel_release"] = kernel
    meta_path.write_text(json.dumps(m, indent=2))
    return dst


@pytest.fixture(scope="module")
def fleet_dir(recordings, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("fleet")
    copies = []
    for i in range(N_COPIES):
        host = HOSTS[i % len(HOSTS)]
        copies.append(_copy(recordings[i % len(recordings)], d / f"rewritten-copy-{i:02d}-{host}.trace", host,
                            KERNELS[i % len(KERNELS)], i))
    synthetic = d / "synthetic-failed-split-vma.trace"
    shutil.copytree(GOLDEN / synthetic.name, synthetic)
    # A damaged part: the reader skips it with a warning, the fleet must say "damaged".
    damaged = _copy(recordings[0], d / "rewritten-copy-damaged-part.trace", HOSTS[0], None, 99)
    part = sorted((damaged / "events" / "syscall").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2])
    # A trace that cannot be loaded at all: metadata.json cut in the middle.
    broken = _copy(recordings[1], d / "broken-truncated-metadata.trace", HOSTS[1], None, 98)
    meta = broken / "metadata.json"
    meta.write_text(meta.read_text()[:200])
    return {"dir": d, "copies": copies, "synthetic": synthetic, "damaged": damaged, "damaged_part": part,
            "broken": broken}


@pytest.fixture(scope="module")
def fl(fleet_dir):
    with fleet.open(fleet_dir["dir"], n_workers=2) as f:
        assert len(f.client.scheduler_info()["workers"]) == 2
        f.analyse()
        yield f


def _expected(path: Path, name: str) -> pd.DataFrame:
    """One trace's table from the per-trace API, with the id columns taken from its metadata.json."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the damaged trace's skipped part (its own test checks that)
        t = mmtrace.open(path)
        df = ReportData(t).vma_counts() if name == "vma_counts" else table(t, name)
    m = json.loads((path / "metadata.json").read_text())
    df = df.copy()
    for c in df.columns:  # each trace has its own categories: the fleet keeps the values
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(df[c].cat.categories.dtype)
    ids = {"trace": str(path), "host": m.get("host") or "", "boot_id": m.get("boot_id") or "",
           "kernel": m.get("kernel_release") or ""}
    for i, (c, v) in enumerate(ids.items()):
        df.insert(i, c, pd.Series([v] * len(df), index=df.index, dtype="str"))
    return df


def _analysed(fleet_dir) -> list[Path]:
    return sorted([*fleet_dir["copies"], fleet_dir["synthetic"], fleet_dir["damaged"]], key=str)


@pytest.mark.parametrize("name", fleet.TABLES)
def test_fleet_tables_equal_concatenation_of_per_trace_tables(fl, fleet_dir, name):
    got = fl.table(name)
    assert got.npartitions == N_COPIES + 2  # one per analysed trace; the broken one has none
    got = got.compute().reset_index(drop=True)
    frames = [_expected(p, name) for p in _analysed(fleet_dir)]
    rows = [f for f in frames if len(f)]
    assert rows or name == "hugetlb", f"no trace has {name} rows: the test would compare nothing"
    want = pd.concat(rows, ignore_index=True) if rows else frames[0].iloc[:0]
    pdt.assert_frame_equal(got, want)


def test_counts_match_the_trace_api(fl, fleet_dir):
    """Per process: the fleet's split/merge counts are Trace.processes()' (the detectors' own)."""
    p = fl.processes().compute()
    for path in fleet_dir["copies"][:3]:
        t = mmtrace.open(path).processes()
        mine = p[p["trace"] == str(path)].set_index("pid").sort_index()
        t = t.set_index("pid").sort_index()
        assert list(mine.index) == list(t.index) and len(t) >= 1
        assert (mine["splits"] == t["splits"]).all() and (mine["merges"] == t["merges"]).all()
        assert mine["splits"].sum() > 0 and mine["vmas_peak"].min() > 0


def test_ids_hosts_and_kernels(fl, fleet_dir):
    p = fl.processes()
    assert set(p["host"].unique().compute()) == set(HOSTS) | {""}  # "": the synthetic trace has no host
    kernels = set(p["kernel"].unique().compute())
    recorded = json.loads((fleet_dir["copies"][2] / "metadata.json").read_text())["kernel_release"]
    assert {k for k in KERNELS if k} | {recorded} <= kernels
    by_trace = p.groupby("trace")["boot_id"].nunique().compute()
    assert (by_trace == 1).all() and len(by_trace) == N_COPIES + 2


def test_broken_trace_reported_and_skipped(fl, fleet_dir):
    s = fl.summary()
    assert len(s) == N_COPIES + 3
    broken = str(fleet_dir["broken"])
    row = s[s["trace"] == broken].iloc[0]
    assert row["status"] == "failed" and "metadata" in row["error"] and "\n" not in row["error"]
    assert list(fl.failed["trace"]) == [broken]
    for name in ("processes", "changes"):
        assert broken not in set(fl.table(name)["trace"].unique().compute())
    ok = s[s["status"] == "ok"]
    assert len(ok) == N_COPIES + 1 and (ok["processes"] > 0).all() and (ok["error"] == "").all()


def test_damaged_trace_is_not_reported_as_fine(fl, fleet_dir):
    s = fl.summary().set_index("trace")
    row = s.loc[str(fleet_dir["damaged"])]
    assert row["status"] == "damaged"
    assert fleet_dir["damaged_part"].name in row["warnings"]


def _raw(path: Path, kind: str) -> pd.DataFrame:
    """Stored events of one trace in part order (what fleet.events promises), ids in front."""
    parts = sorted((path / "events" / kind).glob("part-*.parquet"))
    m = json.loads((path / "metadata.json").read_text())
    df = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    # fields added later (a trace from before them lacks them): "not recorded", as the readers fill them
    for c, missing in LATER_FIELDS.get(kind, {}).items():
        if c not in df.columns:
            df[c] = np.full(len(df), missing, dtype=empty_frame(kind)[c].dtype)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(df[c].cat.categories.dtype)
    for i, c in enumerate(("trace", "host", "boot_id", "kernel")):
        v = str(path) if c == "trace" else (m.get({"kernel": "kernel_release"}.get(c, c)) or "")
        df.insert(i, c, pd.Series([v] * len(df), dtype="str"))
    return df


def test_events_lazy_over_every_part(fl, fleet_dir):
    with pytest.warns(UserWarning) as w:
        ev = fl.events("syscall")
    msgs = " ".join(str(x.message) for x in w)
    assert str(fleet_dir["broken"]) in msgs and fleet_dir["damaged_part"].name in msgs
    import dask.dataframe as dd

    assert isinstance(ev, dd.DataFrame)
    got = ev.compute().reset_index(drop=True)
    paths = sorted([*fleet_dir["copies"], fleet_dir["synthetic"]], key=str)
    want = pd.concat([_raw(p, "syscall") for p in paths], ignore_index=True)
    damaged = got[got["trace"] == str(fleet_dir["damaged"])]
    got = got[got["trace"] != str(fleet_dir["damaged"])].reset_index(drop=True)
    pdt.assert_frame_equal(got, want)
    # the damaged trace: every part but the damaged one (a copy of copies[0]'s)
    full = _raw(fleet_dir["copies"][0], "syscall")
    lost = pq.read_metadata(sorted((fleet_dir["copies"][0] / "events" / "syscall").glob("part-*"))[0]).num_rows
    assert lost > 0 and len(damaged) == len(full) - lost
    # a raw-event question across hosts without replay: mprotect calls per kernel
    per_kernel = ev[ev["syscall"] == "mprotect"].groupby("kernel").size().compute()
    assert per_kernel.sum() == (want["syscall"] == "mprotect").sum() + (damaged["syscall"] == "mprotect").sum()


def test_events_schema_checked(fl, fleet_dir, tmp_path):
    odd = _copy(fleet_dir["copies"][0], tmp_path / "rewritten-copy-odd-schema.trace", "rewritten-host-odd", None, 7)
    part = sorted((odd / "events" / "proc").glob("part-*.parquet"))[-1]
    t = pq.read_table(part)
    pq.write_table(t.append_column("extra", t.column(0)), part)
    with fleet.open([fleet_dir["copies"][0], odd], client=fl.client) as small:
        assert len(small.events("syscall").compute()) > 0  # other kinds still match
        with pytest.raises(fleet.FleetError, match=f"{part.name}.*extra"):
            small.events("proc")


def test_cli_report_on_an_existing_cluster(fl, fleet_dir, tmp_path):
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "mmtrace", "fleet", "report", str(fleet_dir["dir"]), "-o", str(out),
                        "--scheduler", fl.client.scheduler.address], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # the broken and the damaged trace
    assert f"{fleet_dir['broken']}: not analysed: TraceError" in r.stderr
    assert f"{fleet_dir['damaged']}: damaged" in r.stderr
    assert "Traceback" not in r.stderr
    s = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert len(s) == N_COPIES + 3 and set(s["status"]) == {"ok", "damaged", "failed"}
    for name in fleet.TABLES:
        d = ds.dataset(out / "parquet" / name, partitioning="hive", format="parquet")
        t = d.to_table()
        assert t.num_rows == len(fl.table(name)), name
        if t.num_rows:
            assert {"trace", "host", "boot_id", "kernel"} <= set(t.column_names)
    p = ds.dataset(out / "parquet" / "processes", partitioning="hive").to_table().to_pandas()
    want = fl.processes().compute()
    assert sorted(p["host"].astype(str).unique()) == sorted([*HOSTS, ""])  # "": the synthetic trace (no host)
    assert p.groupby("trace").size().sort_index().equals(want.groupby("trace").size().sort_index())
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and str(fleet_dir["broken"]) in html
    for png in ("vma_counts.png", "splits_merges.png", "anomalies.png"):
        assert (out / png).stat().st_size > 5000


def test_cli_report_on_a_local_cluster(fleet_dir, tmp_path):
    out = tmp_path / "report"
    some = [str(p) for p in fleet_dir["copies"][:3]]
    r = subprocess.run([sys.executable, "-m", "mmtrace", "fleet", "report", *some, "-o", str(out), "--workers", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "LocalCluster of 1 workers" in r.stderr and "3 traces" in r.stderr
    assert "3 traces: 3 ok" in r.stdout
    s = pd.read_csv(out / "summary.csv")
    assert list(s["trace"]) == sorted(some) and (s["status"] == "ok").all()
