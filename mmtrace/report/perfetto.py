"""A trace in Perfetto's format (``mmtrace export --perfetto``), for ui.perfetto.dev.

Written with the protos the ``perfetto`` package ships
(``perfetto.protos.perfetto.trace.perfetto_trace_pb2``) and its
``TraceProtoBuilder``, serialised every :data:`_CHUNK` packets and appended
to the file (serialised ``Trace`` messages concatenate into one: a big trace
never sits in memory whole), as TrackEvent packets on one sequence, event and
argument names interned:

- a process track per traced process (``TrackDescriptor.process``), a
  thread track per thread seen (``TrackDescriptor.thread``);
- each traced syscall a slice on its thread's track, from its entry to its
  exit (``ts_enter`` .. ``ts``), named by the syscall, with ``call`` (as
  strace shows it, every argument decoded) and ``ret`` as debug annotations;
- each change of a VMA tree an instant on the process's ``VMA changes``
  track at its first write (``ts``), named by its kind, with ``cause``,
  ``range``, ``before`` and ``after`` (the VMAs as ``0xSTART-0xEND perms``)
  and ``ts_end`` as debug annotations;
- counter tracks: ``VMAs`` and ``mapped bytes`` per process (after each
  change, as :meth:`ReportData.vma_counts`), and, when the trace has hugetlb
  samples, ``hugetlb resv_huge_pages (kernel)``, ``hugetlb free_huge_pages
  (kernel)`` and ``hugetlb reservations (model)``.

Timestamps stay the trace's CLOCK_MONOTONIC ns: a ClockSnapshot makes
MONOTONIC the trace clock and ties it to REALTIME (the recording's start).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .frames import format_call, report_data
from .views import vma_text

__all__ = ["write_perfetto", "PerfettoSummary", "TRACK_UUID", "require_perfetto"]

_SEQ = 1  # the one trusted_packet_sequence_id
_CHUNK = 20_000  # packets serialised at once
_MONOTONIC, _REALTIME = 3, 1  # ClockSnapshot.Clock.BuiltinClocks

#: Track uuids: kind << 40 | pid or tid (pids and tids are below 2**22).
TRACK_UUID = {"process": 1, "thread": 2, "changes": 3, "vmas": 4, "mapped": 5, "hugetlb": 6}
_HUGETLB = {"kernel_resv": ("hugetlb resv_huge_pages (kernel)", 1), "free_huge_pages":
            ("hugetlb free_huge_pages (kernel)", 2), "model_resv": ("hugetlb reservations (model)", 3)}


def uuid(kind: str, n: int) -> int:
    return (TRACK_UUID[kind] << 40) | int(n)


def require_perfetto():
    """The ``perfetto`` package's protos, or ImportError saying what to install."""
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
        from perfetto.trace_builder.proto_builder import TraceProtoBuilder
    except ImportError as e:
        raise ImportError("the 'perfetto' package is needed to write Perfetto traces: pip install 'mmtrace[perfetto]' "
                          f"(./setup.sh installs it) ({e})") from e
    return pb, TraceProtoBuilder


@dataclass
class PerfettoSummary:
    """What :func:`write_perfetto` wrote."""

    path: Path
    processes: int = 0
    threads: int = 0
    syscalls: int = 0
    changes: int = 0
    counters: dict = field(default_factory=dict)  # track name -> values written
    bytes: int = 0


def _threads(trace, sc: pd.DataFrame, ch: pd.DataFrame) -> pd.DataFrame:
    """(tid, pid, comm) of every thread with a syscall or a change."""
    parts = []
    if len(sc):
        parts.append(pd.DataFrame({"tid": sc["tid"].astype(np.int64), "pid": sc["tgid"].astype(np.int64),
                                   "comm": sc["comm"].astype(str)}))
    if len(ch):
        parts.append(pd.DataFrame({"tid": ch["tid"].astype(np.int64), "pid": ch["pid"].astype(np.int64),
                                   "comm": ch["comm"].astype(str)}))
    if not parts:
        return pd.DataFrame(columns=["tid", "pid", "comm"])
    # the last name a thread had (after its exec)
    return pd.concat(parts).drop_duplicates("tid", keep="last").sort_values("tid", ignore_index=True)


def write_perfetto(trace, path) -> PerfettoSummary:
    """Write ``trace`` (path, trace or ReportData) to ``path`` in Perfetto's protobuf format.

    Returns a :class:`PerfettoSummary` (processes, threads, syscalls,
    changes, values per counter track).  See the module docstring for the
    tracks."""
    pb, Builder = require_perfetto()
    rd = report_data(trace)
    t = rd.trace
    m = t.metadata
    procs = rd.processes()
    sc = t.events("syscall")
    sc = sc[sc["tgid"].isin(procs["pid"])] if len(sc) else sc
    ch = rd.changes()
    vc = rd.vma_counts()
    h = rd.safe("hugetlb")
    threads = _threads(t, sc, ch)
    out = Path(path)
    res = PerfettoSummary(path=out)
    TE = pb.TrackEvent
    names: dict[str, int] = {}

    def iid(name: str, pkt) -> int:
        # Event names interned on the sequence: each string once in the file.
        i = names.get(name)
        if i is None:
            i = names[name] = len(names) + 1
            e = pkt.interned_data.event_names.add()
            e.iid, e.name = i, name
        return i

    with open(out, "wb") as f:
        b = _Chunks(f, Builder)
        p = b.create_packet()
        p.trusted_packet_sequence_id = _SEQ
        p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
        p.trace_packet_defaults.timestamp_clock_id = _MONOTONIC
        p.clock_snapshot.primary_trace_clock = _MONOTONIC
        c = p.clock_snapshot.clocks.add()
        c.clock_id, c.timestamp = _MONOTONIC, int(m.get("start_ns") or 0)
        if m.get("start_wall"):
            c = p.clock_snapshot.clocks.add()
            c.clock_id, c.timestamp = _REALTIME, int(float(m["start_wall"]) * 1e9)
        b.write_packet(p)

        def track(u: int, fill) -> None:
            p = b.create_packet()
            p.trusted_packet_sequence_id = _SEQ
            p.track_descriptor.uuid = u
            fill(p.track_descriptor)
            b.write_packet(p)

        for r in procs.itertuples(index=False):
            def proc(d, r=r):
                d.process.pid = int(r.pid)
                d.process.process_name = str(r.comm)
            track(uuid("process", r.pid), proc)
            for kind, name, unit in (("changes", "VMA changes", None), ("vmas", "VMAs", pb.CounterDescriptor.UNIT_COUNT),
                                     ("mapped", "mapped bytes", pb.CounterDescriptor.UNIT_SIZE_BYTES)):
                def sub(d, r=r, name=name, unit=unit):
                    d.parent_uuid = uuid("process", r.pid)
                    d.name = name
                    if unit is not None:
                        d.counter.unit = unit
                track(uuid(kind, r.pid), sub)
            res.processes += 1
        for r in threads.itertuples(index=False):
            def thr(d, r=r):
                d.thread.pid = int(r.pid)
                d.thread.tid = int(r.tid)
                d.thread.thread_name = str(r.comm)
            track(uuid("thread", r.tid), thr)
            res.threads += 1
        hug = h is not None and len(h) > 0
        if hug:
            for col, (name, n) in _HUGETLB.items():
                def hd(d, name=name):
                    d.name = name
                    d.counter.unit = pb.CounterDescriptor.UNIT_COUNT
                track(uuid("hugetlb", n), hd)

        # Every timed event, in time order (slices' ends after their begins).
        ev = []  # (ts, order, kind, row)
        if len(sc):
            te = sc["ts_enter"].to_numpy(np.int64)
            tx = sc["ts"].to_numpy(np.int64)
            ev.append(np.stack([te, np.full(len(sc), 1), np.zeros(len(sc)), np.arange(len(sc))], 1))
            ev.append(np.stack([np.maximum(tx, te), np.full(len(sc), 0), np.ones(len(sc)), np.arange(len(sc))], 1))
        if len(ch):
            ev.append(np.stack([ch["ts"].to_numpy(np.int64), np.full(len(ch), 2), np.full(len(ch), 2),
                                np.arange(len(ch))], 1))
        if len(vc):
            ev.append(np.stack([vc["ts"].to_numpy(np.int64), np.full(len(vc), 3), np.full(len(vc), 3),
                                np.arange(len(vc))], 1))
        if hug:
            ev.append(np.stack([h["ts"].to_numpy(np.int64), np.full(len(h), 3), np.full(len(h), 4),
                                np.arange(len(h))], 1))
        ev = np.concatenate(ev).astype(np.int64) if ev else np.zeros((0, 4), dtype=np.int64)
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]

        sc_cols = {c: sc[c].to_numpy() for c in ("tid", "ret", "arg0", "arg1", "arg2", "arg3", "arg4", "arg5")} \
            if len(sc) else {}
        sc_name = sc["syscall"].astype(str).tolist() if len(sc) else []
        ch_cols = {c: ch[c].tolist() for c in ("pid", "kind", "cause", "call", "lo", "hi", "ts_end", "tid", "before",
                                              "after")} if len(ch) else {}
        # record -g: the change's call site (detect/callsites.py), as in the report's section
        callsite = ch["callsite"].astype(str).tolist() if len(ch) and "callsite" in ch.columns else None
        vc_pid, vc_n, vc_b = (vc["pid"].to_numpy(np.int64), vc["vmas"].to_numpy(np.int64),
                              vc["mapped"].to_numpy(np.uint64)) if len(vc) else ((), (), ())
        known = set(procs["pid"].astype(int).tolist())

        arg_names: dict[str, int] = {}

        def ann(p, name: str):
            a = p.track_event.debug_annotations.add()
            i = arg_names.get(name)
            if i is None:
                i = arg_names[name] = len(arg_names) + 1
                n = p.interned_data.debug_annotation_names.add()
                n.iid, n.name = i, name
            a.name_iid = i
            return a

        def packet(ts: int):
            p = b.create_packet()
            p.trusted_packet_sequence_id = _SEQ
            p.sequence_flags = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
            p.timestamp = ts
            return p

        def counter(ts: int, track: int, value: int, name: str) -> None:
            p = packet(ts)
            p.track_event.type = TE.TYPE_COUNTER
            p.track_event.track_uuid = track
            p.track_event.counter_value = value
            b.write_packet(p)
            res.counters[name] = res.counters.get(name, 0) + 1

        hcols = {col: h[col].to_numpy(np.int64) for col in _HUGETLB} if hug else {}
        for ts, _, kind, i in ev.tolist():
            if kind == 3:
                pid = int(vc_pid[i])
                if pid in known:
                    counter(ts, uuid("vmas", pid), int(vc_n[i]), "VMAs")
                    counter(ts, uuid("mapped", pid), int(vc_b[i]), "mapped bytes")
                continue
            if kind == 4:
                for col, (name, n) in _HUGETLB.items():
                    counter(ts, uuid("hugetlb", n), int(hcols[col][i]), name)
                continue
            p = packet(ts)
            e = p.track_event
            if kind == 0:
                e.type = TE.TYPE_SLICE_BEGIN
                e.track_uuid = uuid("thread", sc_cols["tid"][i])
                e.name_iid = iid(sc_name[i], p)
                args = [int(sc_cols[f"arg{k}"][i]) for k in range(6)]
                ann(p, "call").string_value = format_call(sc_name[i], args, int(sc_cols["ret"][i]))
                ann(p, "ret").int_value = int(sc_cols["ret"][i])
                res.syscalls += 1
            elif kind == 1:
                e.type = TE.TYPE_SLICE_END
                e.track_uuid = uuid("thread", sc_cols["tid"][i])
            else:
                e.type = TE.TYPE_INSTANT
                e.track_uuid = uuid("changes", ch_cols["pid"][i])
                e.name_iid = iid(str(ch_cols["kind"][i]), p)
                ann(p, "cause").string_value = str(ch_cols["cause"][i])
                if ch_cols["call"][i]:
                    ann(p, "call").string_value = str(ch_cols["call"][i])
                if callsite is not None and callsite[i]:
                    ann(p, "callsite").string_value = callsite[i]
                ann(p, "range").string_value = f"{int(ch_cols['lo'][i]):#x}-{int(ch_cols['hi'][i]):#x}"
                ann(p, "tid").int_value = int(ch_cols["tid"][i])
                ann(p, "ts_end").int_value = int(ch_cols["ts_end"][i])
                for side in ("before", "after"):
                    a = ann(p, side)
                    for v in ch_cols[side][i]:
                        a.array_values.add().string_value = vma_text(v)
                    if not len(ch_cols[side][i]):
                        a.string_value = "(none)"
                res.changes += 1
            b.write_packet(p)
        b.flush()
    res.bytes = out.stat().st_size
    return res


class _Chunks:
    """``TraceProtoBuilder`` packets appended to ``f`` every :data:`_CHUNK` packets
    (the streaming builder's interface: create, fill, write)."""

    def __init__(self, f, builder) -> None:
        self.f, self.builder = f, builder
        self.b, self.n = builder(), 0

    def create_packet(self):
        self.n += 1
        return self.b.add_packet()

    def write_packet(self, p) -> None:  # already in the chunk
        if self.n >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.n:
            self.f.write(self.b.serialize())
            self.b, self.n = self.builder(), 0
