"""Golden: ``mmtrace report`` on the checked-in traces, its files read back against the trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mmtrace
from mmtrace.cli.main import main as cli
from mmtrace.report import ReportData, plots
from tests.golden.make_golden import DATA

pytestmark = pytest.mark.golden

DEMO = DATA / "demo.trace"
SYNTH = DATA / "synthetic-failed-split-vma.trace"
TABLES = ["processes", "changes", "splits", "merges", "anomalies", "hugetlb", "vmas"]


def _read_csv(path: Path) -> pd.DataFrame:
    # keep_default_na=False: "" stays "" (no NaN), hex stays text
    return pd.read_csv(path, keep_default_na=False, dtype=str)


def _ints(col) -> list[int]:
    return [int(x, 0) for x in col]


@pytest.fixture(scope="module")
def demo():
    return mmtrace.open(DEMO)


@pytest.fixture(scope="module")
def demo_csv(tmp_path_factory):
    """``mmtrace report`` run as a user would: a separate process, CSV."""
    out = tmp_path_factory.mktemp("demo-report")
    p = subprocess.run([sys.executable, "-m", "mmtrace", "report", str(DEMO), "-o", str(out), "--format", "csv,png"],
                       capture_output=True, text=True, timeout=120)
    return out, p


@pytest.fixture(scope="module")
def demo_parquet(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-parquet")
    rc = cli(["report", str(DEMO), "-o", str(out), "--format", "parquet", "-q"])
    return out, rc


@pytest.fixture(scope="module")
def synth_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth-report")
    rc = cli(["report", str(SYNTH), "-o", str(out), "-q", "--format", "png"])
    return out, rc


def test_cli_writes_everything(demo_csv):
    out, p = demo_csv
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no warning, no progress bar (not a TTY)
    for name in TABLES:
        assert (out / f"{name}.csv").is_file(), name
    pngs = sorted(x.name for x in out.glob("*.png"))
    assert {"vma_count.png", "splits_merges.png", "hugetlb.png"} <= set(pngs)
    assert any(n.startswith("timeline-") for n in pngs)
    assert (out / "index.html").is_file()
    # the terminal summary: every section, and the files
    for heading in ("processes (3", "changes by kind", "splits:", "merges:", "anomalies:", "lost events: 0",
                    "index.html"):
        assert heading in p.stdout, heading


def test_csv_row_counts_equal_the_frames(demo_csv, demo):
    out, _ = demo_csv
    frames = {"processes": demo.processes(), "changes": demo.changes(), "splits": demo.splits(),
              "merges": demo.merges(), "anomalies": demo.anomalies(), "hugetlb": demo.hugetlb()}
    for name, df in frames.items():
        assert len(_read_csv(out / f"{name}.csv")) == len(df), name
        assert len(df) > 0 or name == "anomalies", name
    p = _read_csv(out / "processes.csv")
    want = demo.processes().set_index("pid")
    for r in p.itertuples(index=False):
        assert int(r.splits) == want.loc[int(r.pid), "splits"] and int(r.merges) == want.loc[int(r.pid), "merges"]
        assert int(r.vmas_start) > 0 and int(r.vmas_peak) >= max(int(r.vmas_start), int(r.vmas_end))


def test_csv_addresses_are_hex_and_parse_back(demo_csv, demo):
    out, _ = demo_csv
    ch = _read_csv(out / "changes.csv")
    want = demo.changes()
    for c in ("lo", "hi", "tree"):
        assert ch[c].str.startswith("0x").all(), c
        assert _ints(ch[c]) == [int(v) for v in want[c]], c
    assert list(ch["ts"].astype(np.int64)) == list(want["ts"])
    # syscall arguments: hex where the syscall takes an address, decimal otherwise
    mm = ch["syscall"] == "mmap"
    assert mm.any() and ch.loc[mm, "arg0"].str.startswith("0x").all() and ch.loc[mm, "ret"].str.startswith("0x").all()
    assert not ch.loc[mm, "arg1"].str.startswith("0x").any()
    # kernel paths (no syscall) have empty argument cells, never a decimal 0 among hex addresses
    sc = ch["syscall"] != ""
    assert (~sc).any() and (ch.loc[~sc, ["arg0", "arg1", "ret"]] == "").all().all()
    for c in ("arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "ret"):
        assert _ints(ch.loc[sc, c]) == [int(v) for v in want.loc[sc.to_numpy(), c]], c
        # one format per (syscall, column): hex addresses or decimal numbers, not both
        for name, g in ch[sc].groupby("syscall"):
            vals = g[c][~g[c].str.startswith("-")]
            assert vals.str.startswith("0x").all() or not vals.str.startswith("0x").any(), (name, c)
    # lists: "; "-separated, each VMA "0xSTART-0xEND perms"
    row = int(np.flatnonzero(want["kind"] == "split")[0])
    first = ch.loc[row, "after"].split("; ")[0]
    s, e = first.split(" ")[0].split("-")
    assert (int(s, 16), int(e, 16), first.split(" ")[1]) == tuple(want.loc[row, "after"][0])
    sp = _read_at(out)
    assert sp == [list(a) for a in demo.splits()["at"]]
    v = _read_csv(out / "vmas.csv")
    assert v["start"].str.startswith("0x").all() and (np.array(_ints(v["end"])) > np.array(_ints(v["start"]))).all()


def _read_at(out: Path) -> list[list[int]]:
    return [[int(x, 16) for x in a.split("; ")] for a in _read_csv(out / "splits.csv")["at"]]


def test_parquet_keeps_integers(demo_parquet, demo):
    out, rc = demo_parquet
    assert rc == 0
    t = pq.read_table(out / "changes.parquet")
    for c in ("lo", "hi", "tree", "arg0"):
        assert str(t.schema.field(c).type) == "uint64", c
    df = t.to_pandas()
    want = demo.changes()
    assert len(df) == len(want) and list(df["lo"]) == list(want["lo"]) and list(df["ret"]) == list(want["ret"])
    sp = pq.read_table(out / "splits.parquet")
    at_type = sp.schema.field("at").type
    assert pa.types.is_list(at_type) and at_type.value_type == pa.uint64()
    assert [list(a) for a in sp.column("at").to_pylist()] == [list(a) for a in demo.splits()["at"]]
    assert [d["start"] for d in sp.column("before").to_pylist()[0]] == [d["start"] for d in demo.splits()["before"][0]]
    h = pq.read_table(out / "hugetlb.parquet").to_pandas()
    assert list(h["resv_huge_pages"]) == [int(x) for x in demo.hugetlb()["resv_huge_pages"]]
    for name in TABLES:
        assert (out / f"{name}.parquet").is_file(), name


def test_synthetic_anomalies(synth_csv):
    out, rc = synth_csv
    assert rc == 0
    a = _read_csv(out / "anomalies.csv")
    assert set(a["kind"]) == {"model_kernel_disagree", "kernel_counter_underflow", "negative_reservation"}
    assert (a["severity"] == "error").all() and a["explanation"].str.len().min() > 40
    h = _read_csv(out / "hugetlb.csv")
    assert list(h["kernel_resv"].astype(int)) == [4, 2, -2] and list(h["model_resv"].astype(int)) == [4, 4, 0]
    assert h.loc[1, "call"] == "mprotect(0x7f0000400000, 4194304, PROT_READ) = -ENOMEM"
    page = (out / "index.html").read_text()
    assert "SYNTHETIC" in page and "kernel_counter_underflow" in page


def test_pngs_are_real_plots(demo_csv, synth_csv):
    for out in (demo_csv[0], synth_csv[0]):
        for png in out.glob("*.png"):
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png


def test_index_html_links_the_files(demo_csv, demo_parquet):
    out, _ = demo_csv
    page = (out / "index.html").read_text()
    for link in ("changes.csv", "splits.csv", "anomalies.csv", "hugetlb.csv", "vma_count.png", "splits_merges.png"):
        assert f"href='{link}'" in page, link
    assert "href='changes.parquet'" in (demo_parquet[0] / "index.html").read_text()
    assert not list(demo_parquet[0].glob("*.png"))  # PNGs only with --format png


def test_format_takes_tables_and_png(tmp_path):
    from mmtrace.report.build import parse_formats

    assert parse_formats("csv") == (["csv"], False)
    assert parse_formats("png") == (["csv"], True)
    assert parse_formats("parquet,png") == (["parquet"], True)
    assert parse_formats(["csv", "parquet"]) == (["csv", "parquet"], False)
    with pytest.raises(ValueError, match="unknown format 'pdf'"):
        parse_formats("csv,pdf")
    assert cli(["report", str(DEMO), "-o", str(tmp_path), "--format", "svg"]) == 2  # a usage error
    assert cli(["report", str(DEMO), "-o", str(tmp_path / "both"), "--format", "csv,parquet", "-q"]) == 0
    assert (tmp_path / "both" / "changes.csv").is_file() and (tmp_path / "both" / "changes.parquet").is_file()


def test_figure_functions_return_labelled_axes(demo):
    import matplotlib.pyplot as plt

    rd = ReportData(demo)
    ax = plots.vma_count(rd)
    assert ax.get_ylabel() == "VMAs" and ax.get_xlabel() == "time since recording start (ms)"
    assert len(ax.lines) == 3 and {ln.get_label().split()[0] for ln in ax.lines} == {"12064", "12066", "12067"}
    ax = plots.address_timeline(rd, 12064)
    assert ax.get_ylabel().startswith("address") and ax.get_xlabel().startswith("time since recording start")
    # One bar per VMA lifetime, except that lifetimes of one range and colour
    # less than a pixel apart are drawn as one bar: every range still shows.
    shown = rd.vmas_shown().query("pid == 12064")
    bars = len(ax.collections[0].get_paths())
    assert len(shown.drop_duplicates(["start", "end", "perms"])) <= bars <= len(shown)
    assert bars >= len(shown) - 3  # the demo's lifetimes are mostly far apart
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert all(s.startswith("0x") for s in labels) and "0x7f4b49c00000" in labels
    ax = plots.splits_merges(rd)
    assert "splits up, merges down" in ax.get_ylabel()
    heights = [p.get_height() for p in ax.patches]
    assert sum(h for h in heights if h > 0) == demo.splits()["count"].sum()
    assert -sum(h for h in heights if h < 0) == demo.merges()["count"].sum()
    ax = plots.hugetlb(rd)
    assert ax.get_ylabel() == "huge pages"
    labels = [ln.get_label() for ln in ax.lines]
    assert "resv_huge_pages (kernel)" in labels and any(lb.startswith("model_resv") for lb in labels)
    plt.close("all")


def test_vma_counts_match_the_model(demo):
    rd = ReportData(demo)
    vc = rd.vma_counts()
    for r in vc.iloc[:: max(1, len(vc) // 12)].itertuples(index=False):
        assert r.vmas == len(demo.vmas(r.pid, r.ts)), (r.pid, r.ts)


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    assert cli(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such trace directory" in err
    bad = tmp_path / "bad.trace"
    bad.mkdir()
    (bad / "metadata.json").write_text("{not json")
    assert cli(["report", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupted metadata" in err


def test_help_teaches(capsys):
    assert cli(["report", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("TRACE-report", "--format", "parquet", "png", "index.html", "0x-hex", "examples:", "Exit status",
                 "offline"):
        assert word in text, word


def test_skipped_analyses_are_said():
    """An analysis the trace cannot feed is named with its reason, in the text and at the page's top."""
    from mmtrace.report.frames import report_data
    from mmtrace.report.html import _state
    from mmtrace.report.text import report_text

    synth = mmtrace.open(DATA / "synthetic-failed-split-vma.trace")  # has no vm_unmapped_area events
    assert synth.skipped() == {"unmapped_area": "the trace has no 'unmapped_area' events"}
    assert "SKIPPED    unmapped_area: the trace has no 'unmapped_area' events" in report_text(synth)
    ok, lines = _state(report_data(synth), ())
    assert any("Analysis not run" in x and "unmapped_area" in x for x in lines)
    demo = mmtrace.open(DATA / "demo.trace")  # a recording that feeds every analysis
    assert demo.skipped() == {} and "SKIPPED" not in report_text(demo)
    ok, lines = _state(report_data(demo), ())
    assert ok and lines == [lines[0]] and "every analysis computed" in lines[0]
