"""Bad input and damaged traces: one TraceError, or a trace that knows what it lost."""

from __future__ import annotations

import json
import shutil
import warnings

import pandas as pd
import pytest

import mmtrace
from mmtrace.cli.main import main as cli
from mmtrace.trace import TraceError, TraceFile, TraceWriter
from tests.conftest import frame
from tests.golden.make_golden import DATA

DEMO = DATA / "demo.trace"


def _three_parts(path, complete=True):
    """A trace whose tree_write table has three parts: ts 10-20, 30-40, 50-60."""
    w = TraceWriter(path)
    for lo in (10, 30, 50):
        w.append("events/tree_write", frame("tree_write", [
            {"ts": lo, "tgid": 1, "tid": 1, "fn": 1}, {"ts": lo + 10, "tgid": 1, "tid": 1, "fn": 1}]))
    w.append("events/syscall", frame("syscall", [{"ts": 15, "tgid": 1, "tid": 1, "sc": 1}]))
    w.write_metadata({"complete": complete, "start_ns": 5, "stop_ns": 100 if complete else 12,
                      "events": {"tree_write": 6, "syscall": 1}, "lost": {"tree_write": 0},
                      # the kernel facts the model reads (trace.kernel raises when they are missing)
                      "page_size": 4096, "mmap_min_addr": 65536,
                      "probe_plan": {"offsets": {"mm_struct.mm_mt": 64}}})
    return path


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mmtrace.open(path)


@pytest.mark.parametrize("content, match", [
    ("null", r"a JSON null, not an object"),
    ("[]", r"a JSON array, not an object"),
    ('"x"', r"a JSON string, not an object"),
    (json.dumps({"format": "mmtrace-trace", "format_version": "1"}), r'format_version is "1", not a whole number'),
    (json.dumps({"format": "mmtrace-trace", "format_version": None}), r"format_version is null"),
    (json.dumps({"format": "mmtrace-trace", "format_version": 1.5}), r"format_version is 1.5"),
    (json.dumps({"format": ["mmtrace-trace"]}), r"not an mmtrace trace"),
    ("\udcff", r"corrupted metadata"),
    ("[" * 100000, r"corrupted metadata"),
])
def test_bad_metadata_is_one_trace_error(tmp_path, content, match):
    d = tmp_path / "t"
    shutil.copytree(DEMO, d)
    (d / "metadata.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(TraceError, match=match) as e:
        mmtrace.open(d)
    assert "\n" not in str(e.value) and "restore" in str(e.value) or "not an mmtrace" in str(e.value)


def test_metadata_directory_is_a_trace_error(tmp_path):
    d = tmp_path / "t"
    shutil.copytree(DEMO, d)
    (d / "metadata.json").unlink()
    (d / "metadata.json").mkdir()
    with pytest.raises(TraceError, match="metadata.json: not a file"):
        mmtrace.open(d)


def test_cli_bad_metadata_one_line_exit_2(tmp_path, capsys):
    d = tmp_path / "t"
    shutil.copytree(DEMO, d)
    (d / "metadata.json").write_text("null")
    for cmd in (["summary", str(d)], ["report", str(d), "-q", "-o", str(tmp_path / "r")]):
        assert cli(cmd) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mmtrace: ") and "Traceback" not in err


def test_wrong_typed_fields_are_dropped_and_reported(tmp_path):
    d = tmp_path / "t"
    shutil.copytree(DEMO, d)
    m = json.loads((d / "metadata.json").read_text())
    m.update(lost="none", events=[1], stop_ns=-5, page_size="4096")
    (d / "metadata.json").write_text(json.dumps(m))
    t = _open(d)
    assert t.damaged and {"lost", "events", "stop_ns", "page_size"}.isdisjoint(t.metadata)
    assert sorted(x.field for x in t.damage) == ["events", "lost", "page_size", "stop_ns"]
    # page_size feeds the model: every model finding is withheld
    assert t.model_reliable_until() is not None


def test_empty_kinds_keep_typed_columns(tmp_path):
    t = _open(_three_parts(tmp_path / "t"))
    for kind in ("fault", "vma_store", "hugetlb", "proc"):
        ev = t.events(kind)
        assert len(ev) == 0 and {"ts", "tgid", "tid"} <= set(ev.columns), kind
        assert str(ev["ts"].dtype) == "uint64"
    assert {"arg0", "ret", "syscall"} <= set(t.events("syscall").columns)
    assert "what" in t.events("proc").columns and "address" in t.events("fault").columns


def test_truncated_part_is_a_gap_between_its_neighbours(tmp_path):
    d = _three_parts(tmp_path / "t")
    p = d / "events/tree_write/part-000002.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    t = _open(d)
    assert list(t.events("tree_write")["ts"]) == [10, 20, 50, 60]
    assert t.damaged and t.damage[0].what == "unreadable_part"
    g = t.gaps()
    assert g[["kind", "ts_from", "ts_to"]].values.tolist() == [["tree_write", 20, 50]]
    assert t.model_reliable_until() == 20


def test_corrupted_page_is_caught_by_its_checksum(tmp_path):
    d = _three_parts(tmp_path / "t")
    import pyarrow.parquet as pq

    p = d / "events/tree_write/part-000003.parquet"
    md = pq.ParquetFile(p).metadata
    col = md.row_group(0).column(md.schema.names.index("vm_start"))
    b = bytearray(p.read_bytes())
    b[col.data_page_offset + col.total_compressed_size - 1] ^= 0x01  # the last byte of the page's values
    p.write_bytes(bytes(b))
    assert len(pq.read_table(p)) == 2  # without its checksum this part would read "fine", with a wrong value
    t = _open(d)
    assert [x.path for x in t.damage] == [str(p)] and "CRC" in t.damage[0].detail
    assert t.gaps()[["ts_from", "ts_to"]].values.tolist() == [[40, 100]]  # to the end of the recording


def test_deleted_part_and_deleted_events(tmp_path):
    d = _three_parts(tmp_path / "t")
    (d / "events/tree_write/part-000002.parquet").unlink()
    t = _open(d)
    assert [(x.what, x.ts_from, x.ts_to) for x in t.damage] == [("missing_part", 20, 50)]
    shutil.rmtree(d / "events")
    t = _open(d)
    assert {(x.what, x.kind) for x in t.damage} == {("missing_table", "tree_write"), ("missing_table", "syscall")}
    assert t.model_reliable_until() == 5


def test_deleted_last_part_shows_as_missing_rows(tmp_path):
    d = _three_parts(tmp_path / "t")
    (d / "events/tree_write/part-000003.parquet").unlink()
    t = _open(d)
    assert [(x.what, x.ts_from, x.ts_to) for x in t.damage] == [("missing_rows", 40, 100)]


def test_leftover_tmp_part_is_ignored_and_reported(tmp_path):
    d = _three_parts(tmp_path / "t")
    (d / "events/tree_write/.part-000004.parquet.tmp").write_bytes(b"PAR1 half")
    t = _open(d)
    assert len(t.events("tree_write")) == 6
    assert [x.what for x in t.damage] == ["leftover_tmp"]
    assert "never finished" in str(t.damage[0])


def test_incomplete_trace_has_honest_duration_and_unknown_lost(tmp_path, capsys):
    d = _three_parts(tmp_path / "t", complete=False)  # stop_ns of an early flush: 12
    t = _open(d)
    assert t.end_ns == 60 and t.duration_s == pytest.approx(55e-9)
    assert not t.lost_known
    assert cli(["summary", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("INCOMPLETE") and "lost events: unknown" in out and "recorded 0.00s (to the last event)" in out
    assert "tree_write    6" in out  # counted from the events read, not metadata.json


def test_summary_of_a_damaged_trace_says_so_first_and_exits_1(tmp_path, capsys):
    d = _three_parts(tmp_path / "t")
    (d / "events/tree_write/part-000002.parquet").write_bytes(b"junk")
    assert cli(["summary", str(d)]) == 1
    cap = capsys.readouterr()
    assert cap.out.startswith("DAMAGED") and "part-000002.parquet" in cap.out.splitlines()[1]
    assert "Traceback" not in cap.err


def test_findings_after_a_gap_are_withheld(tmp_path):
    d = _three_parts(tmp_path / "t")
    (d / "events/tree_write/part-000002.parquet").write_bytes(b"junk")
    t = _open(d)
    f = pd.DataFrame({"ts": [15, 25, 55, 55], "pid": [1, 1, 1, -1], "severity": ["error"] * 4,
                      "kind": ["unmapped_area_disagree", "model_kernel_disagree", "negative_reservation",
                               "kernel_warning"], "explanation": ["a", "b", "c", "d"]})
    out = t.drop_stale_findings(f)
    assert out["kind"].tolist() == ["trace_damaged", "unmapped_area_disagree", "kernel_warning"]
    assert out["ts"].tolist()[0] == 20 and "2 left out" in out["explanation"][0]
    # an intact trace keeps everything
    assert _open(_three_parts(tmp_path / "u")).drop_stale_findings(f) is f


def test_record_refuses_bad_commands_and_options_before_anything(tmp_path, capsys):
    out = tmp_path / "never"
    cases = [
        (["-c", ""], "empty command"),
        (["-c", "   "], "empty command"),
        (["-c", 'python3 -c "oops'], "cannot split it into words (No closing quotation)"),
        (["-c", "echo hi | cat"], "runs no shell"),
        (["-c", "true && true"], "runs no shell"),
        (["--"], "nothing after --"),
        (["--", ""], "is empty"),
        (["--duration", "nan", "-c", "true"], "finite number of seconds"),
        (["--duration", "inf", "-c", "true"], "finite number of seconds"),
        (["--duration", "-1", "-c", "true"], "finite number of seconds"),
        (["--buffer-mb", "3", "-c", "true"], "power of two in size: use 2 or 4"),
        (["--buffer-mb", "4096", "-c", "true"], "largest BPF ring buffer is 2048 MiB"),
        (["--buffer-mb", "0", "-c", "true"], "must be positive"),
    ]
    for args, msg in cases:
        rc = cli(["record", "-o", str(out), *args])
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert not out.exists()


def test_buffer_beyond_available_memory_is_refused(monkeypatch):
    from mmtrace.capture import recorder

    monkeypatch.setattr(recorder, "_mem_available", lambda: 256 << 20)
    with pytest.raises(recorder.RecordError, match=r"more than half the memory available .*: use 32 or less") as e:
        recorder.check_options(recorder.RecordOptions(buffer_mb=512))
    assert e.value.code == 2


def test_debug_flag_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("MMTRACE_DEBUG", raising=False)
    from mmtrace.cli import main as m

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(m, "cmd_summary", boom)
    assert cli(["summary", str(DEMO)]) == 70
    with pytest.raises(RuntimeError):
        cli(["--debug", "summary", str(DEMO)])
    monkeypatch.delenv("MMTRACE_DEBUG", raising=False)


def test_empty_command_is_never_the_whole_system():
    from mmtrace.capture.session import Target, TargetError

    for cmd in ([], [""], ["  "]):
        with pytest.raises(TargetError, match="command to trace is empty"):
            Target(command=cmd).check()
        assert not Target(command=cmd).system_wide
    assert Target().system_wide


def test_vmas_after_a_gap_are_possibly_stale(tmp_path):
    d = _three_parts(tmp_path / "t")
    assert not _open(d).vmas(1, at=55)["possibly_stale"].any()
    (d / "events/tree_write/part-000002.parquet").write_bytes(b"junk")
    t = _open(d)
    assert "possibly_stale" in t.vmas(1, at=15).columns
    v = t.vmas(1, at=55)
    assert (v["possibly_stale"] == True).all()  # noqa: E712
    assert t.unmapped_area_check()["possibly_stale"].dtype == bool
