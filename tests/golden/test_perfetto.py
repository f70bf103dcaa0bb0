"""Golden: ``mmtrace export --perfetto`` read back with the protos it was written with."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

import mmtrace
from mmtrace.cli.main import main as cli
from mmtrace.report import ReportData, format_call
from mmtrace.report.perfetto import uuid
from tests.golden.make_golden import DATA

pytestmark = pytest.mark.golden

DEMO = DATA / "demo.trace"
TE = pb.TrackEvent


def read_back(path):
    """(tracks by uuid, events by track uuid [(ts, type, name, annotations, counter)], clock snapshot,
    timestamps in file order)."""
    t = pb.Trace()
    t.ParseFromString(path.read_bytes())
    tracks, events, names, arg_names, clock = {}, defaultdict(list), {}, {}, None
    order = []  # every event's timestamp, in file order
    for p in t.packet:
        for n in p.interned_data.event_names:
            names[n.iid] = n.name
        for n in p.interned_data.debug_annotation_names:
            arg_names[n.iid] = n.name
        if p.HasField("clock_snapshot"):
            clock = p.clock_snapshot
        if p.HasField("track_descriptor"):
            tracks[p.track_descriptor.uuid] = p.track_descriptor
        if p.HasField("track_event"):
            e = p.track_event
            ann = {arg_names.get(a.name_iid, a.name): a for a in e.debug_annotations}
            value = e.counter_value if e.type == TE.TYPE_COUNTER else None
            events[e.track_uuid].append((p.timestamp, e.type, names.get(e.name_iid, e.name), ann, value))
            order.append(p.timestamp)
    return tracks, events, clock, order


def test_demo_has_every_kind_of_track():
    assert len(mmtrace.open(DEMO).hugetlb()) > 0  # so that the round trip above checks the hugetlb counters


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("perfetto") / "demo.pftrace"
    assert cli(["export", "--perfetto", str(DEMO), "-o", str(out)]) == 0
    return out


def test_tracks_counts_and_timestamps(exported):
    check_round_trip(DEMO, exported)


def check_round_trip(trace_path, exported) -> None:
    """Every process, thread, syscall, change and counter value of the trace, read back from ``exported``."""
    trace = mmtrace.open(trace_path)
    rd = ReportData(trace)
    tracks, events, clock, order = read_back(exported)
    assert clock.primary_trace_clock == pb.BUILTIN_CLOCK_MONOTONIC
    assert [c.timestamp for c in clock.clocks if c.clock_id == pb.BUILTIN_CLOCK_MONOTONIC] == [trace.metadata["start_ns"]]

    procs = rd.processes()
    ptracks = {d.process.pid: d for d in tracks.values() if d.HasField("process")}
    assert set(ptracks) == set(procs["pid"])
    assert {pid: d.process.process_name for pid, d in ptracks.items()} == dict(zip(procs["pid"], procs["comm"]))

    # syscalls: a slice per call on its thread's track, from entry to exit
    sc = trace.events("syscall")
    sc = sc[sc["tgid"].isin(procs["pid"])]
    ttracks = {d.thread.tid: d for d in tracks.values() if d.HasField("thread")}
    assert set(sc["tid"].astype(int)) <= set(ttracks)
    for tid, d in ttracks.items():
        assert d.thread.pid in ptracks
    begins = [(ts, n) for u, ev in events.items() for ts, ty, n, _, _ in ev if ty == TE.TYPE_SLICE_BEGIN]
    ends = [ts for u, ev in events.items() for ts, ty, _, _, _ in ev if ty == TE.TYPE_SLICE_END]
    assert len(begins) == len(ends) == len(sc) > 0
    assert sorted(begins) == sorted(zip(sc["ts_enter"].astype(int), sc["syscall"].astype(str)))
    assert sorted(ends) == sorted(sc["ts"].astype(int))
    for tid, g in sc.groupby("tid"):
        ev = [x for x in events[uuid("thread", tid)] if x[1] == TE.TYPE_SLICE_BEGIN]
        assert [x[0] for x in ev] == sorted(g["ts_enter"].astype(int))
    mm = next(x for x in events[uuid("thread", sc["tid"].iloc[0])] if x[2] == "mmap")
    row = sc[(sc["tid"] == sc["tid"].iloc[0]) & (sc["syscall"] == "mmap")].iloc[0]
    assert mm[3]["call"].string_value == format_call("mmap", [int(row[f"arg{k}"]) for k in range(6)], int(row["ret"]))
    assert mm[3]["ret"].int_value == int(row["ret"])

    # changes: an instant per change on the process's "VMA changes" track
    ch = rd.changes()
    for pid, g in ch.groupby("pid"):
        assert tracks[uuid("changes", pid)].parent_uuid == uuid("process", pid)
        ev = [x for x in events[uuid("changes", pid)] if x[1] == TE.TYPE_INSTANT]
        assert [x[0] for x in ev] == g["ts"].astype(int).tolist()
        assert [x[2] for x in ev] == g["kind"].tolist()
        assert [x[3]["cause"].string_value for x in ev] == g["cause"].tolist()
        assert [x[3]["ts_end"].int_value for x in ev] == g["ts_end"].astype(int).tolist()
        for (_, _, _, ann, _), before, after, lo, hi in zip(ev, g["before"], g["after"], g["lo"], g["hi"]):
            assert len(ann["before"].array_values) == len(before) and len(ann["after"].array_values) == len(after)
            assert ann["range"].string_value == f"{int(lo):#x}-{int(hi):#x}"
            if after:
                assert ann["after"].array_values[0].string_value.startswith(f"{int(after[0][0]):#x}-{int(after[0][1]):#x}")

    # counters: VMAs and mapped bytes per process, hugetlb reservations kernel and model
    vc = rd.vma_counts()
    for pid, g in vc.groupby("pid"):
        assert tracks[uuid("vmas", pid)].counter.unit == pb.CounterDescriptor.UNIT_COUNT
        got = [(ts, v) for ts, _, _, _, v in events[uuid("vmas", pid)]]
        assert got == list(zip(g["ts"].astype(int), g["vmas"].astype(int)))
        got = [v for *_, v in events[uuid("mapped", pid)]]
        assert got == g["mapped"].astype(int).tolist()
    h = rd.hugetlb()
    by_name = {d.name: u for u, d in tracks.items() if d.name.startswith("hugetlb")}
    if len(h):
        kernel = [(ts, v) for ts, _, _, _, v in events[by_name["hugetlb resv_huge_pages (kernel)"]]]
        assert kernel == list(zip(h["ts"].astype(int), h["kernel_resv"].astype(int)))
        model = [v for *_, v in events[by_name["hugetlb reservations (model)"]]]
        assert model == h["model_resv"].astype(int).tolist()
    else:
        assert not by_name
    # written in time order, every event counted above
    assert np.all(np.diff(order) >= 0)
    assert len(order) == 2 * len(sc) + len(ch) + 2 * len(vc) + 3 * len(h)


def test_export_errors_are_one_line(tmp_path, capsys):
    assert cli(["export", "--perfetto", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli(["export", str(DEMO), "-o", str(tmp_path / "x.pftrace")]) == 2
    assert "--perfetto" in capsys.readouterr().err
    assert cli(["export", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--perfetto", "process track", "counter tracks", "Exit status"):
        assert word in text, word
