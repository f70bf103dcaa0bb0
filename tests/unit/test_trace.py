"""The trace directory: written in parts, read back typed, damage reported."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from mmtrace.trace import IncompleteTraceWarning, TraceError, TraceFile, TraceWriter
from tests.conftest import frame

FN = {0xFFFF0001: "mas_store_prealloc", 0xFFFF0002: "mas_wr_node_store"}


def _write_small(path, complete=True):
    w = TraceWriter(path)
    w.write_metadata({"complete": False})
    w.append("procfs/attach", pd.DataFrame([{"pid": 100, "ppid": 1, "comm": "sh", "exe": "/bin/sh", "ts": 10, "tree": 0}]))
    w.append(
        "events/proc",
        frame("proc", [
            {"ts": 20, "tgid": 100, "tid": 100, "what": 1, "pid": 101, "child_tgid": 101, "comm": b"sh", "tree": 0xAA40, "mm": 0xAA00},
            {"ts": 30, "tgid": 101, "tid": 101, "what": 2, "pid": 101, "child_tgid": 101, "comm": b"true", "filename": b"/bin/true", "tree": 0xBB40, "mm": 0xBB00},
            {"ts": 40, "tgid": 101, "tid": 101, "what": 3, "pid": 101, "flags": 0x4, "comm": b"true"},
        ]),
    )
    # Two parts of one table, out of order in time across parts.
    w.append("events/tree_write", frame("tree_write", [
        {"ts": 35, "tgid": 101, "tid": 101, "fn": 0xFFFF0001, "tree": 0xBB40, "index": 0x1000, "last": 0x1FFF, "val": 0x5000, "flags": 3},
    ], fn_names=FN))
    w.append("events/tree_write", frame("tree_write", [
        {"ts": 15, "tgid": 100, "tid": 100, "fn": 0xFFFF0002, "tree": 0xAA40, "index": 0x1000, "last": 0x1FFF, "val": 0, "flags": 2},
        {"ts": 25, "tgid": 100, "tid": 100, "fn": 0xFFFF0001, "tree": 0xAA40, "index": 0x2000, "last": 0x2FFF, "val": 0x6000, "flags": 3},
    ], fn_names=FN))
    w.write_metadata({"complete": complete, "lost": {"tree_write": 0, "syscall": 2}, "stop_reason": "test"})
    return w


def test_roundtrip_types_and_order(tmp_path):
    _write_small(tmp_path / "t")
    t = TraceFile(tmp_path / "t")
    tw = t.events("tree_write")
    assert list(tw["ts"]) == [15, 25, 35]
    assert tw["tree"].dtype == np.uint64 and tw["index"].dtype == np.uint64
    assert tw["fn"].dtype == "category"
    assert list(tw["fn"]) == ["mas_wr_node_store", "mas_store_prealloc", "mas_store_prealloc"]
    # comm follows the process's name over time: sh before exec, true after.
    assert list(tw["comm"]) == ["sh", "sh", "true"]
    assert t.lost == {"tree_write": 0, "syscall": 2}


def test_processes(tmp_path):
    _write_small(tmp_path / "t")
    p = TraceFile(tmp_path / "t").processes().set_index("pid")
    assert p.loc[100, "attached"] and p.loc[100, "comm"] == "sh"
    assert p.loc[101, "ppid"] == 100
    assert p.loc[101, "exec"] == ["/bin/true"]
    assert p.loc[101, "comm"] == "true"
    assert p.loc[101, "start_ts"] == 20 and p.loc[101, "exit_ts"] == 40
    assert p.loc[101, "trees"] == [0xAA40, 0xBB40]
    assert np.isnan(p.loc[100, "exit_ts"])


def test_incomplete_trace_warns_but_opens(tmp_path):
    _write_small(tmp_path / "t", complete=False)
    with pytest.warns(IncompleteTraceWarning, match="did not stop cleanly"):
        t = TraceFile(tmp_path / "t")
    assert len(t.events("tree_write")) == 3


def test_damaged_part_is_reported_and_skipped(tmp_path):
    _write_small(tmp_path / "t")
    part = tmp_path / "t/events/tree_write/part-000002.parquet"
    part.write_bytes(part.read_bytes()[:50])
    t = TraceFile(tmp_path / "t")
    with pytest.warns(UserWarning, match="part-000002.parquet: damaged part skipped"):
        tw = t.events("tree_write")
    assert list(tw["ts"]) == [35]


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "no metadata.json"),
        ("{not json", "corrupted metadata"),
        (json.dumps({"format": "perf"}), "not an mmtrace trace"),
        (json.dumps({"format": "mmtrace-trace", "format_version": 99}), "newer than this mmtrace"),
    ],
)
def test_bad_metadata(tmp_path, content, match):
    d = tmp_path / "t"
    d.mkdir()
    if content is not None:
        (d / "metadata.json").write_text(content)
    with pytest.raises(TraceError, match=match):
        TraceFile(d)


def test_missing_directory(tmp_path):
    with pytest.raises(TraceError, match="no such trace directory"):
        TraceFile(tmp_path / "nope")


def test_writes_are_atomic_no_temp_left(tmp_path):
    _write_small(tmp_path / "t")
    assert not list((tmp_path / "t").rglob(".*.tmp"))


def test_owner_applied(tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.fail("chown to another user needs root; run the suite as root (CI does)")
    w = TraceWriter(tmp_path / "o" / "t", owner=(65534, 65534))
    w.write_metadata({"complete": True})
    w.append("events/proc", frame("proc", [{"ts": 1, "tgid": 1, "what": 2}]))
    for p in [tmp_path / "o" / "t", *(tmp_path / "o" / "t").rglob("*")]:
        assert p.stat().st_uid == 65534, p


def test_unknown_kind(tmp_path):
    _write_small(tmp_path / "t")
    with pytest.raises(KeyError, match="unknown event kind"):
        TraceFile(tmp_path / "t").events("nope")


def test_decode_syscall_and_proc_columns():
    df = frame("syscall", [{"ts": 5, "ts_enter": 4, "ret": -12, "args": [1, 2, 3, 4, 5, 6], "sc": 2, "nr": 11}],
               syscalls={"mmap": 1, "munmap": 2})
    assert df.loc[0, "syscall"] == "munmap" and df.loc[0, "ret"] == -12
    assert [df.loc[0, f"arg{i}"] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    assert "args" not in df and "sc" not in df and "kind" not in df and "_pad1" not in df
    pf = frame("proc", [{"what": 2, "comm": b"true\0garbage", "filename": b"/bin/true"}])
    assert pf.loc[0, "comm"] == "true" and pf.loc[0, "what"] == "exec"
