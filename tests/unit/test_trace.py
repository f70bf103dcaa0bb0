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


def _tree_writes(rng, n, tgids, ts0):
    """Synthetic tree_write rows: a constant tree/mm (the kernel pointers are
    above 2**63), random addresses, a few pids."""
    return [
        {"ts": ts0 + 10 * i, "tgid": int(rng.choice(tgids)), "tid": 7, "cpu": 1, "fn": 0xFFFF0001,
         "tree": 0xFFFF8881C68A3240, "mm": 0xFFFF8881C68A3200, "index": int(rng.integers(0, 2**48)),
         "last": int(rng.integers(0, 2**64, dtype=np.uint64)), "flags": int(rng.integers(0, 4))}
        for i in range(n)
    ]


def test_multi_part_table_same_as_one_concatenation(tmp_path, monkeypatch):
    """Parts are copied column by column into one buffer, constant columns
    filled from the parts' statistics: the frame must be what concatenating
    the parts' Arrow tables and converting them once gives."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import mmtrace.trace.reader as reader

    monkeypatch.setattr(reader, "_COPY_MIN_BYTES", 0)  # that path even for small tables
    monkeypatch.setattr(reader, "_READ_BYTES", 4000)  # and several reads per part
    rng = np.random.default_rng(0)
    w = TraceWriter(tmp_path / "t")
    w.write_metadata({"complete": True})
    for k, tgids in enumerate([[100], [100], [100, 101], [101]]):  # constant tgid in some parts only
        w.append("events/tree_write", frame("tree_write", _tree_writes(rng, 300, tgids, 1000 * k), fn_names=FN))
    w.append("events/tree_write", frame("tree_write", [], fn_names=FN))  # an empty part
    parts = sorted((tmp_path / "t/events/tree_write").glob("part-*.parquet"))
    want = pa.concat_tables([pq.read_table(p) for p in parts]).to_pandas(split_blocks=True)
    got = TraceFile(tmp_path / "t").table("events/tree_write")
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got["tree"].dtype == np.uint64 and (got["tree"] == 0xFFFF8881C68A3240).all()

    # Nulls in an integer column of a later part: the column becomes float
    # as a plain conversion makes it.
    t0 = pq.read_table(parts[0])
    t1 = t0.set_column(t0.schema.get_field_index("index"), "index",
                       pa.array([None] + t0["index"].to_pylist()[1:], type=pa.uint64()))
    d = tmp_path / "n/events/tree_write"
    d.mkdir(parents=True)
    pq.write_table(t0, d / "part-000001.parquet")
    pq.write_table(t1, d / "part-000002.parquet")
    (tmp_path / "n/metadata.json").write_text(json.dumps({"format": "mmtrace-trace", "format_version": 1, "complete": True}))
    got = TraceFile(tmp_path / "n").table("events/tree_write")
    pd.testing.assert_frame_equal(got, pa.concat_tables([t0, t1]).to_pandas(split_blocks=True), check_exact=True)
    assert got["index"].dtype == np.float64 and np.isnan(got["index"].iloc[300])


def test_comm_lookup_matches_merge_asof():
    """events()' comm: the last name of the tgid at or before ts, else its
    first name, else NaN; a (ts, tgid) named twice keeps its last name.
    Checked against pandas.merge_asof on the timeline as _comm_timeline makes it."""
    from mmtrace.trace.reader import _CommLookup

    rng = np.random.default_rng(1)
    raw = pd.DataFrame({
        "ts": rng.integers(100, 1000, 80).astype(np.int64),
        "tgid": rng.integers(1, 8, 80).astype(np.int64),
        "comm": rng.choice(["sh", "true", "mmloop", "a", "b"], 80),
    })
    raw.loc[40:, "ts"] = raw.loc[:39, "ts"].to_numpy()  # same instants again, some for the same tgid
    look = _CommLookup(raw["ts"].to_numpy(), raw["tgid"].to_numpy(), raw["comm"].to_numpy(dtype=object))
    names = raw.assign(comm=raw["comm"].astype(str))
    names = names.sort_values("ts", kind="stable").drop_duplicates(["ts", "tgid"], keep="last")
    cats = pd.Categorical(names["comm"])
    assert look.dtype == cats.dtype
    right = pd.DataFrame({"ts": names["ts"], "tgid": names["tgid"], "code": cats.codes.astype(np.int32)})
    first = right.groupby("tgid")["code"].first()
    for tgids in ([3], [9], list(range(1, 11))):  # one named pid, one never named, many (some unnamed)
        ts = np.sort(rng.integers(0, 1100, 2000)).astype(np.uint64)  # some before any name
        tgid = rng.choice(tgids, 2000).astype(np.uint32)
        left = pd.DataFrame({"ts": ts.astype(np.int64), "tgid": tgid.astype(np.int64)})
        m = pd.merge_asof(left, right, on="ts", by="tgid", direction="backward")
        want = m["code"].fillna(m["tgid"].map(first)).fillna(-1).to_numpy(np.int64)
        np.testing.assert_array_equal(look.codes(ts, tgid).astype(np.int64), want)
