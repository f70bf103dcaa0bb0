"""The recorder writes Arrow tables built without pandas (events.decode.to_arrow,
columns_to_arrow, rows_to_arrow): differential tests against the previous
path, ``pyarrow.Table.from_pandas`` of the DataFrames, through a real trace
written with TraceWriter and read back with TraceFile."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mmtrace.capture.session import snapshot_columns, snapshot_maps
from mmtrace.events.decode import columns_to_arrow, make_records, rows_to_arrow, to_arrow, to_frame
from mmtrace.events.schema import KINDS
from mmtrace.trace.reader import TraceFile
from mmtrace.trace.writer import TraceWriter

FN = {0xFFFF0000_00001000: "mas_store_prealloc", 0xFFFF0000_00002000: "mas_wr_node_store",
      0xFFFF0000_00003000: "mas_store_prealloc"}  # two addresses, one name: merged
SC = {"mmap": 1, "munmap": 2, "mprotect": 3}


def _records(kind: str, n: int, seed: int) -> np.ndarray:
    """n records of ``kind`` with every field random (strings too)."""
    rng = np.random.default_rng(seed)
    rec = make_records(kind, [{} for _ in range(n)])
    for name in rec.dtype.names:
        f = rec.dtype[name]
        if f.kind in "ui" and f.shape == ():
            rec[name] = rng.integers(0, min(np.iinfo(f).max, 1 << 62), n, dtype=np.int64).astype(f)
        elif f.kind == "S":
            rec[name] = [bytes(rng.choice(list(b"abc/\0\xe9"), f.itemsize).tolist()) for _ in range(n)]
        elif f.shape:
            rec[name] = rng.integers(0, 1 << 62, (n,) + f.shape).astype(f.base)
    if kind == "tree_write":
        rec["fn"] = rng.choice(list(FN) + [0xFFFF0000_00009000], n)  # one unknown: 0x... label
    if kind == "syscall":
        rec["sc"] = rng.integers(1, 5, n)  # 4: not in SC
    if kind == "proc":
        rec["what"] = rng.integers(1, 5, n)  # 4: unnamed
    return rec


def _trace(tmp, name: str, tables: dict) -> TraceFile:
    w = TraceWriter(tmp / name)
    for table, parts in tables.items():
        for part in parts:
            w.append(table, part)
    w.write_metadata({"complete": True})
    return TraceFile(tmp / name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_to_arrow_matches_from_pandas(tmp_path, kind):
    batches = [_records(kind, n, seed) for seed, n in enumerate((1, 257, 3000))]
    old = [pa.Table.from_pandas(to_frame(kind, b, fn_names=FN, syscalls=SC), preserve_index=False) for b in batches]
    new = [to_arrow(kind, b, fn_names=FN, syscalls=SC) for b in batches]
    for o, n in zip(old, new):
        assert n.schema.equals(o.schema, check_metadata=False), (n.schema, o.schema)
    t_old = _trace(tmp_path, "old", {f"events/{kind}": old})
    t_new = _trace(tmp_path, "new", {f"events/{kind}": new})
    pd.testing.assert_frame_equal(t_new.table(f"events/{kind}"), t_old.table(f"events/{kind}"))
    pd.testing.assert_frame_equal(t_new.events(kind), t_old.events(kind))


def test_snapshot_and_row_tables_match_from_pandas(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(30)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"  # exec'ed and running: a full maps file
        cols = snapshot_columns(proc.pid, "attach")
        old_snap = snapshot_maps(proc.pid, "attach")
    finally:
        proc.kill()
        proc.wait()
    assert len(cols["start"]) > 5
    rows = [{"pid": 1, "ppid": 0, "comm": "init", "exe": "/sbin/init", "ts": 5, "tree": 0},
            {"pid": 2, "ppid": 1, "comm": "é", "exe": "", "ts": 6, "tree": 1 << 62}]
    old = {"procfs/maps": [pa.Table.from_pandas(old_snap, preserve_index=False)],
           "procfs/attach": [pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)]}
    new = {"procfs/maps": [columns_to_arrow(cols)], "procfs/attach": [rows_to_arrow(rows)]}
    for k in old:
        assert new[k][0].schema.equals(old[k][0].schema, check_metadata=False), k
    t_old, t_new = _trace(tmp_path, "old", old), _trace(tmp_path, "new", new)
    # The same process read twice: only the read's own timestamps may differ.
    a, b = t_new.table("procfs/maps"), t_old.table("procfs/maps")
    pd.testing.assert_frame_equal(a.drop(columns=["ts_before", "ts_after"]), b.drop(columns=["ts_before", "ts_after"]))
    pd.testing.assert_frame_equal(t_new.table("procfs/attach"), t_old.table("procfs/attach"))


def test_recorder_modules_do_not_import_pandas():
    # What `mmtrace record` imports before and while it records.
    code = ("import sys, mmtrace.cli.main, mmtrace.capture.recorder, mmtrace.capture.session; "
            "from mmtrace.events.decode import to_arrow, make_records; "
            "to_arrow('tree_write', make_records('tree_write', [{'fn': 1}])); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'bcc')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------- piece by piece
# The recorder's flush (capture/session.record_pieces, TraceWriter.append_pieces)
# decodes and writes a batch a piece at a time, one row group each, instead of
# joining the drained arrays and decoding them whole: the trace read back must
# be the one the whole-batch write made.

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mmtrace.capture.session import record_pieces  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8), limit_recs=st.integers(1, 50),
       extra=st.integers(0, 7))
def test_record_pieces_keeps_every_record_in_order(sizes, limit_recs, extra):
    itemsize = KINDS["syscall"].dtype.itemsize
    limit = limit_recs * itemsize + extra  # not always a whole number of records
    rec = np.dtype([("x", "<i8"), ("pad", f"V{itemsize - 8}")])  # records of the syscall kind's size
    arrays, start = [], 0
    for n in sizes:
        a = np.zeros(n, dtype=rec)
        a["x"] = np.arange(start, start + n)
        arrays.append(a)
        start += n
    chunks = list(arrays)
    pieces = list(record_pieces(chunks, limit))
    assert chunks == []  # consumed
    got = np.concatenate([p["x"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    assert got.tolist() == list(range(sum(sizes)))
    per = -(-limit // itemsize)  # at least limit bytes: whole records
    assert all(len(p) == per for p in pieces[:-1])  # full pieces, the last one the rest
    assert all(0 < len(p) <= per for p in pieces)


@pytest.mark.parametrize("kind", ["tree_write", "syscall", "proc"])
@pytest.mark.parametrize("limit_recs", [1, 100, 10_000])
def test_piecewise_write_reads_back_as_the_whole_batch(tmp_path, kind, limit_recs):
    drained = [_records(kind, n, seed) for seed, n in enumerate((300, 1, 1700, 40))]
    whole = to_arrow(kind, np.concatenate(drained), fn_names=FN, syscalls=SC)
    t_old = _trace(tmp_path, "old", {f"events/{kind}": [whole]})
    w = TraceWriter(tmp_path / "new")
    pieces = (to_arrow(kind, a, fn_names=FN, syscalls=SC)
              for a in record_pieces(list(drained), limit_recs * drained[0].itemsize))
    assert w.append_pieces(f"events/{kind}", pieces) == len(whole) == w.rows[f"events/{kind}"]
    w.write_metadata({"complete": True})
    t_new = TraceFile(tmp_path / "new")
    pd.testing.assert_frame_equal(t_new.table(f"events/{kind}"), t_old.table(f"events/{kind}"))
    pd.testing.assert_frame_equal(t_new.events(kind), t_old.events(kind))
    parts = sorted((tmp_path / "new" / "events" / kind).glob("part-*.parquet"))
    import pyarrow.parquet as pq

    assert len(parts) == 1  # one part, one row group per piece
    assert pq.ParquetFile(parts[0]).num_row_groups == -(-len(whole) // limit_recs)


def test_a_piece_with_wider_codes_starts_a_new_part(tmp_path):
    # 200 distinct fn names need int16 codes where the first piece's few fit int8.
    names = {0xFFFF0000_00010000 + i: f"fn{i}" for i in range(200)}
    few = _records("tree_write", 50, 1)
    few["fn"] = list(names)[:3] * 16 + list(names)[:2]
    many = _records("tree_write", 400, 2)
    many["fn"] = list(names) * 2
    tables = [to_arrow("tree_write", a, fn_names=names) for a in (few, many, few)]
    assert tables[0].schema != tables[1].schema
    w = TraceWriter(tmp_path / "t")
    assert w.append_pieces("events/tree_write", iter(tables)) == 500
    w.write_metadata({"complete": True})
    assert len(list((tmp_path / "t" / "events" / "tree_write").glob("part-*.parquet"))) == 3
    got = TraceFile(tmp_path / "t").events("tree_write")
    want = _trace(tmp_path, "old", {"events/tree_write": tables}).events("tree_write")
    pd.testing.assert_frame_equal(got, want)
    raw = TraceFile(tmp_path / "t").table("events/tree_write")  # in written order
    assert raw["fn"].astype(str).tolist() == [names[int(x)] for a in (few, many, few) for x in a["fn"]]
