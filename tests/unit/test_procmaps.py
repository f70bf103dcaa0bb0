"""procmaps: /proc/PID/maps text and workload checkpoints -> DataFrames."""

from __future__ import annotations

import os
import subprocess
import warnings

import numpy as np
import pytest

from mmtrace.events.procmaps import (
    CHECKPOINT_COLUMNS,
    MAPS_COLUMNS,
    parse_checkpoints,
    parse_maps,
    read_checkpoints,
    read_maps,
)

# Real lines from a 6.x kernel, padding included; the space-in-path line has a
# path with inner and trailing-word spaces, the anonymous lines end in "0 ".
MAPS = (
    "55d1c0a00000-55d1c0a02000 r--p 00000000 fe:01 1311003                    /usr/bin/cat\n"
    "55d1c0a02000-55d1c0a07000 r-xp 00002000 fe:01 1311003                    /usr/bin/cat\n"
    "55d1c1b4e000-55d1c1b6f000 rw-p 00000000 00:00 0                          [heap]\n"
    "7f3a4c000000-7f3a4c021000 rw-p 00000000 00:00 0 \n"
    "7f3a4c021000-7f3a50000000 ---p 00000000 00:00 0 \n"
    "7f3a51200000-7f3a51400000 rw-s 00200000 00:11 10041                      /anon_hugepage (deleted)\n"
    "7f3a52000000-7f3a52003000 rw-s 00001000 fe:01 2146321                    /tmp/my data file.bin\n"
    "7f3a52003000-7f3a52005000 rw-p 00000000 fe:01 2146390                    /tmp/mmtrace-demo-PPk7dI (deleted)\n"
    "7f3a52005000-7f3a52006000 r--p 123456789000 103:05 18446744073709551615 /weird\n"
    "7ffd2a0e1000-7ffd2a102000 rw-p 00000000 00:00 0                          [stack]\n"
    "7ffd2a1c4000-7ffd2a1c8000 r--p 00000000 00:00 0                          [vvar]\n"
    "7ffd2a1c8000-7ffd2a1ca000 r-xp 00000000 00:00 0                          [vdso]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
)


def test_parse_maps_columns_and_types():
    df = parse_maps(MAPS)
    assert list(df.columns) == list(MAPS_COLUMNS)
    assert len(df) == 13
    for c in ("start", "end", "pgoff", "inode"):
        assert df[c].dtype == np.uint64, c
    assert df["start"][0] == 0x55D1C0A00000 and df["end"][0] == 0x55D1C0A02000
    assert df["perms"].tolist()[:6] == ["r--p", "r-xp", "rw-p", "rw-p", "---p", "rw-s"]
    assert df["pgoff"][1] == 0x2000
    assert df["dev"][0] == "fe:01" and df["inode"][0] == 1311003
    assert df["path"][0] == "/usr/bin/cat"


def test_parse_maps_paths():
    path = parse_maps(MAPS)["path"].tolist()
    assert path[2] == "[heap]"
    assert path[3] == "" and path[4] == ""  # anonymous: no path, trailing space dropped
    assert path[5] == "/anon_hugepage (deleted)"
    assert path[6] == "/tmp/my data file.bin"  # inner spaces kept
    assert path[7] == "/tmp/mmtrace-demo-PPk7dI (deleted)"
    assert path[9] == "[stack]"
    assert path[-1] == "[vsyscall]"


def test_parse_maps_extremes():
    df = parse_maps(MAPS)
    assert df["start"].iloc[-1] == 0xFFFFFFFFFF600000  # needs the full uint64 range
    assert df["end"].iloc[-1] == 0xFFFFFFFFFF601000
    assert df["perms"].iloc[-1] == "--xp"
    weird = df.iloc[8]
    assert weird["pgoff"] == 0x123456789000  # wider than the usual 8 digits
    assert weird["dev"] == "103:05"
    assert weird["inode"] == 2**64 - 1


def test_parse_maps_empty_and_blank_edges():
    df = parse_maps("")
    assert list(df.columns) == list(MAPS_COLUMNS) and len(df) == 0
    assert df["start"].dtype == np.uint64
    assert len(parse_maps("\n" + MAPS + "\n\n")) == 13
    # no trailing newline on the last line is fine too
    assert len(parse_maps(MAPS.rstrip("\n"))) == 13


@pytest.mark.parametrize(
    "bad",
    [
        "7f00-7f01 rw-p 00000000 00:00\n",  # no inode
        "7f00-7f01 rwzp 00000000 00:00 0\n",  # bad perms
        "hello\n",
    ],
)
def test_parse_maps_rejects_garbage(bad):
    with pytest.raises(ValueError, match="not a maps line"):
        parse_maps(MAPS + bad + MAPS)


def test_read_maps_self_and_gone():
    df = read_maps(os.getpid())
    assert len(df) > 5
    assert (df["start"] < df["end"]).all()
    assert (df["start"].iloc[1:].to_numpy() >= df["end"].iloc[:-1].to_numpy()).all()  # sorted, disjoint
    assert "[stack]" in set(df["path"])
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(ProcessLookupError):
        read_maps(p.pid)  # reaped: gone (pids are not reused this fast)


def _cp(pid, seq, op, tb, ta, body):
    return f"# checkpoint pid={pid} seq={seq} op={op} t_before={tb} t_after={ta}\n{body}# end\n"


A = "7f00000000-7f00010000 rw-p 00000000 00:00 0 \n"
B = (
    "7f00000000-7f00006000 rw-p 00000000 00:00 0 \n"
    "7f00006000-7f0000a000 r--p 00000000 00:00 0 \n"
    "7f0000a000-7f00010000 rw-p 00000000 00:00 0 \n"
)


def test_parse_checkpoints():
    text = _cp(42, 0, "start", 10, 20, MAPS) + _cp(42, 1, "mmap-anon", 30, 40, A) + _cp(42, 2, "mprotect-middle", 50, 60, B)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = parse_checkpoints(text)
    assert list(df.columns) == list(CHECKPOINT_COLUMNS)
    assert len(df) == 13 + 1 + 3
    for c in ("pid", "seq", "t_before", "t_after", "start", "end", "pgoff", "inode"):
        assert df[c].dtype == np.uint64, c
    assert df.groupby("seq").size().tolist() == [13, 1, 3]
    last = df[df["seq"] == 2]
    assert last["op"].unique().tolist() == ["mprotect-middle"]
    assert last["perms"].tolist() == ["rw-p", "r--p", "rw-p"]
    assert ((last["end"] - last["start"]) // 4096).tolist() == [6, 4, 6]
    assert last["t_before"].unique().tolist() == [50] and last["t_after"].unique().tolist() == [60]
    assert (df["pid"] == 42).all()
    assert df[df["seq"] == 0]["path"].tolist() == parse_maps(MAPS)["path"].tolist()


def test_truncated_checkpoint_dropped_with_warning(tmp_path):
    good = _cp(7, 0, "start", 1, 2, MAPS) + _cp(7, 1, "mmap-anon", 3, 4, A)
    f = tmp_path / "7.txt"
    # killed mid-write: header and half the maps text, no "# end"
    f.write_text(good + _cp(7, 2, "munmap", 5, 6, MAPS)[:150])
    with pytest.warns(RuntimeWarning, match="incomplete"):
        df = read_checkpoints(f)
    assert sorted(df["seq"].unique().tolist()) == [0, 1]
    assert len(df) == 14
    # cut inside the header line, and cut right before "# end"
    for cut in (good + "# checkpoint pid=7 se", good + _cp(7, 2, "x", 5, 6, A)[:-6]):
        f.write_text(cut)
        with pytest.warns(RuntimeWarning):
            assert len(read_checkpoints(f)) == 14


def test_read_checkpoints_directory(tmp_path):
    (tmp_path / "100.txt").write_text(_cp(100, 0, "start", 1, 2, A) + _cp(100, 1, "end", 3, 4, B))
    (tmp_path / "20.txt").write_text(_cp(20, 0, "start", 5, 6, B))
    (tmp_path / "notes.md").write_text("not a checkpoint file")
    df = read_checkpoints(tmp_path)
    assert df["pid"].unique().tolist() == [20, 100]  # numeric pid order
    assert df[df["pid"] == 100]["seq"].tolist() == [0, 1, 1, 1]


def test_read_checkpoints_empty(tmp_path):
    df = read_checkpoints(tmp_path)
    assert list(df.columns) == list(CHECKPOINT_COLUMNS) and len(df) == 0
    assert df["t_before"].dtype == np.uint64
