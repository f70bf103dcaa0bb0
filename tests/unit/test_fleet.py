"""mmtrace.fleet without a cluster: finding traces, the per-trace task, the CLI's errors.

The per-trace task (:func:`mmtrace.fleet.tasks.analyse`) runs here in the
test process on the checked-in traces (the golden demo recording and the
SYNTHETIC trace); the fleet on a real Dask cluster is tests/live/test_fleet.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pandas.testing as pdt

import mmtrace
from mmtrace.fleet import ID_COLUMNS, TABLES, analyse, find_traces
from mmtrace.fleet.tasks import event_parts, with_ids
from mmtrace.report import table

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "data"
DEMO = GOLDEN / "demo.trace"
SYNTHETIC = GOLDEN / "synthetic-failed-split-vma.trace"


def _fleet_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fleet"
    (d / "host-a").mkdir(parents=True)
    shutil.copytree(DEMO, d / "host-a" / "one.trace")
    shutil.copytree(DEMO, d / "host-a" / "two.trace")
    shutil.copytree(SYNTHETIC, d / "synthetic.trace")
    (d / "not-a-trace").mkdir()
    (d / "not-a-trace" / "notes.txt").write_text("x")
    return d


def test_find_traces(tmp_path):
    d = _fleet_dir(tmp_path)
    found, missing = find_traces([str(d)])
    assert found == sorted(str(p.resolve()) for p in [d / "host-a/one.trace", d / "host-a/two.trace",
                                                        d / "synthetic.trace"])
    assert missing == []
    # a trace named twice (itself and by its directory) is one trace; globs; what names nothing
    found, missing = find_traces([str(d / "host-a" / "one.trace"), str(d / "host-a"), str(d / "*.trace"),
                                  str(d / "nope"), str(d / "not-a-trace"), str(d / "zz*"), str(d / "not-a-trace/notes.txt")])
    assert len(found) == 3 and len(set(found)) == 3
    why = dict(missing)
    assert why[str(d / "nope")] == "no such file or directory"
    assert "no trace in this directory" in why[str(d / "not-a-trace")]
    assert why[str(d / "zz*")] == "no file matches this pattern"
    assert why[str(d / "not-a-trace/notes.txt")] == "not a trace directory"


def test_analyse_is_the_per_trace_api_with_ids():
    res = analyse(str(DEMO))
    assert res.error == "" and res.summary["status"] == "ok"
    m = json.loads((DEMO / "metadata.json").read_text())
    ids = {"trace": str(DEMO), "host": m["host"], "boot_id": m["boot_id"], "kernel": m["kernel_release"]}
    assert {k: res.summary[k] for k in ID_COLUMNS} == ids
    assert res.summary["events"] == sum(m["events"].values())
    assert set(res.tables) == set(TABLES)
    t = mmtrace.open(DEMO)
    for name in ("processes", "changes", "splits"):
        got = res.tables[name]
        assert list(got.columns[:4]) == list(ID_COLUMNS) and (got["host"] == m["host"]).all()
        want = table(t, name)
        pdt.assert_frame_equal(got.drop(columns=list(ID_COLUMNS)), want.astype(
            {c: want[c].cat.categories.dtype for c in want.columns if isinstance(want[c].dtype, pd.CategoricalDtype)}))
    assert res.summary["processes"] == len(t.processes())
    assert res.summary["splits"] == t.processes()["splits"].sum() > 0


def test_analyse_never_raises_for_a_bad_trace(tmp_path):
    bad = tmp_path / "bad.trace"
    bad.mkdir()
    (bad / "metadata.json").write_text('{"format": "mmtrace-trace", ')
    res = analyse(str(bad))
    assert res.summary["status"] == "failed" and res.tables == {}
    assert res.error.startswith("TraceError: ") and "corrupted metadata" in res.error and "\n" not in res.error
    res = analyse(str(tmp_path / "gone.trace"))
    assert res.summary["status"] == "failed" and "no such trace directory" in res.error


def test_analyse_reports_a_damaged_part(tmp_path):
    t = tmp_path / "damaged.trace"
    shutil.copytree(DEMO, t)
    part = sorted((t / "events" / "tree_write").glob("part-*.parquet"))[0]
    part.write_bytes(b"PAR1 not parquet")
    res = analyse(str(t))
    assert res.summary["status"] == "damaged" and part.name in res.summary["warnings"]
    ids, good, bad = event_parts(str(t), "tree_write")
    assert ids["trace"] == str(t) and [p for p, _ in bad] == [str(part)] and len(good) == len(
        list(part.parent.glob("part-*"))) - 1


def test_with_ids_decodes_categoricals():
    df = pd.DataFrame({"a": pd.Categorical(["x", "y", "x"]), "b": [1, 2, 3]})
    out = with_ids(df, {"trace": "/t", "host": "h", "boot_id": "b", "kernel": "k"})
    assert list(out.columns) == [*ID_COLUMNS, "a", "b"]
    assert not isinstance(out["a"].dtype, pd.CategoricalDtype) and list(out["a"]) == ["x", "y", "x"]
    assert list(out["kernel"]) == ["k"] * 3


def _cli(*args, pre: str = "pass") -> subprocess.CompletedProcess:
    code = f"import sys; {pre}; from mmtrace.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_cli_without_dask_names_the_extra(tmp_path):
    r = _cli("fleet", "report", str(DEMO), "-o", str(tmp_path / "out"), pre="sys.modules['dask'] = None")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'mmtrace[fleet]'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_errors_are_one_line(tmp_path):
    r = _cli("fleet", "report", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no trace found" in r.stderr
    r = _cli("fleet", "report", str(DEMO), "-o", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("fleet")
    assert r.returncode == 2 and "mmtrace fleet report" in r.stderr


def test_core_import_does_not_need_dask():
    r = _cli("--version", pre="sys.modules['dask'] = None; sys.modules['distributed'] = None; import mmtrace.fleet")
    assert r.returncode == 0, r.stderr


def test_hugetlb_list_columns_write_with_one_schema_when_a_trace_has_none():
    """The hugetlb table's list column (``inflight``) and ``alternatives``:
    a trace with no hugetlb sample (zero rows: Arrow types the column null)
    and one whose lists are all empty (no item type) are written with the
    schema of the traces whose values show it (fleet/report.py)."""
    from mmtrace.fleet.report import _parquet_bytes, _table_schema, _to_arrow
    from mmtrace.fleet.tasks import trace_ids
    from mmtrace.report import ReportData

    t = mmtrace.open(DEMO)
    df = with_ids(table(ReportData(t), "hugetlb"), trace_ids(t)).assign(host="h")
    assert len(df) and df["inflight"].map(len).gt(0).all()
    no_lists = df.copy()
    no_lists["inflight"] = [[] for _ in range(len(df))]
    parts = [_to_arrow(x) for x in (df.iloc[:0].copy(), no_lists, df)]
    schema = _table_schema([(tb.schema, known, tb.num_rows) for tb, known in parts])
    assert schema.field("inflight").type == parts[2][0].schema.field("inflight").type
    assert "string" in str(schema.field("alternatives").type)
    assert [_parquet_bytes(p, schema) is None for p in parts] == [True, False, False]
