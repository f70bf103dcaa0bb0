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
