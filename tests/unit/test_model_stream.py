"""The windowed replay on a trace directory with many parts: same answers whatever the window size."""

from __future__ import annotations

import random

import pandas as pd

import mmtrace
from mmtrace.model import Model, tree_frame
from mmtrace.trace.writer import TraceWriter
from tests.unit.test_model import MT, PID, RW, P, A, R, FakeTrace, lines, sc, store


def _scenario(n: int = 300, seed: int = 3):
    rnd = random.Random(seed)
    tw = [store(10, A, A + 64 * P, 0xA1)]
    s = [sc("mmap", 11, [0, 64 * P, 3, 0x22], A)]
    ts = 20
    for k in range(n):
        lo = A + rnd.randrange(64) * P
        hi = min(A + 64 * P, lo + rnd.randrange(1, 8) * P)
        ts += 10
        r = rnd.random()
        if r < 0.5:
            tw.append(store(ts, lo, hi, 0x1000 + k))
        elif r < 0.7:
            tw.append(store(ts, lo, hi, 0))
            s.append(sc("munmap", ts + 1, [lo, hi - lo], 0))
        elif r < 0.85:  # silent exact-fit clear: only the syscall says so
            s.append(sc("munmap", ts + 1, [lo, hi - lo], 0))
        else:
            s.append(sc("mprotect", ts + 1, [lo, hi - lo, rnd.choice([1, 3])], 0))
    return tw, s


def _write(tmp_path, fake: FakeTrace, nparts: int):
    w = TraceWriter(tmp_path / "t.trace")
    for kind in fake.kinds:
        df = fake.raw_events(kind)
        bounds = [len(df) * k // nparts for k in range(nparts + 1)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            w.append(f"events/{kind}", df.iloc[a:b])
    w.write_metadata({"complete": True, "probe_plan": {"offsets": {"mm_struct.mm_mt": MT}}})
    return mmtrace.open(tmp_path / "t.trace")


def test_many_parts_and_small_windows_agree(tmp_path):
    tw, s = _scenario()
    fake = FakeTrace(tw, s)
    t = _write(tmp_path, fake, nparts=7)
    ref = Model(fake, checkpoint_every=10**9)
    ats = [5, 15, 100, 777, 1501, 2222, 2999, 3100, 10**6]
    want = {at: lines(ref.vmas(PID, at)) for at in ats}
    assert any(want.values())
    for every in (1, 5, 64, 10**9):
        m = Model(t, checkpoint_every=every)
        for at in ats:
            assert lines(m.vmas(PID, at)) == want[at], (every, at)
        got = {at: lines(df) for _, at, df in m.sweep([(PID, at) for at in ats])}
        assert got == want, every


def test_unsorted_overlapping_parts(tmp_path):
    tw, s = _scenario(seed=5)
    fake = FakeTrace(tw, s)
    ref = Model(fake, checkpoint_every=10**9)
    # parts written out of ts order and overlapping in ts
    w = TraceWriter(tmp_path / "u.trace")
    for kind in fake.kinds:
        df = fake.raw_events(kind)
        idx = list(range(len(df)))
        chunks = [idx[k::3] for k in range(3)]  # interleaved: every part spans the whole trace
        for c in reversed(chunks):
            w.append(f"events/{kind}", df.iloc[c[::-1]])  # and each part unsorted
    w.write_metadata({"complete": True, "probe_plan": {"offsets": {"mm_struct.mm_mt": MT}}})
    t = mmtrace.open(tmp_path / "u.trace")
    for every in (3, 10**9):
        m = Model(t, checkpoint_every=every)
        for at in (100, 1000, 2000, 10**6):
            pd.testing.assert_frame_equal(m.vmas(PID, at), ref.vmas(PID, at))


def test_streaming_engine_run_to_instants(tmp_path):
    """Engine.run(Model._pos(at)) walks forward through the windows (used by the detectors)."""
    tw, s = _scenario(seed=9)
    fake = FakeTrace(tw, s)
    t = _write(tmp_path, fake, nparts=4)
    ref = Model(fake, checkpoint_every=10**9)
    m = Model(t, checkpoint_every=4)
    e = m.engine()
    for at in (5, 15, 16, 100, 101, 1500, 2999, 10**6):
        e.run(max(m._pos(at), e.pos))
        t_ = e.tree_of(PID)
        got = [] if t_ is None else lines(tree_frame(t_))
        assert got == lines(ref.vmas(PID, at)), at


def _threaded_scenario(n: int = 400, seed: int = 11):
    """Two threads: each syscall's own stores (often covering its range, as
    the kernel's do), silent clears, stale-perms mprotects, and the other
    thread writing into a range while a syscall on it is under way."""
    rnd = random.Random(seed)
    tids = (PID, PID + 1)
    tw = [store(10, A, A + 64 * P, 0xA1)]
    s = [sc("mmap", 11, [0, 64 * P, 3, 0x22], A)]
    ts = 20
    for k in range(n):
        tid = rnd.choice(tids)
        other = tids[1] if tid == tids[0] else tids[0]
        lo = A + rnd.randrange(64) * P
        hi = min(A + 64 * P, lo + rnd.randrange(1, 8) * P)
        ts += 10
        r = rnd.random()
        if r < 0.3:
            tw.append(store(ts, lo, hi, 0x1000 + k, tid=tid))
        elif r < 0.55:  # munmap whose store clears the range (a no-op exit) ...
            tw.append(store(ts - 3, lo, hi, 0, tid=tid))
            if rnd.random() < 0.3:  # ... unless the other thread maps into it meanwhile
                tw.append(store(ts - 2, lo, lo + P, 0x5000 + k, tid=other))
            s.append(sc("munmap", ts, [lo, hi - lo], 0, tid=tid))
        elif r < 0.6:  # silent exact-fit clear
            s.append(sc("munmap", ts, [lo, hi - lo], 0, tid=tid))
        elif r < 0.65:  # a store of part of the range only; or one before the syscall began
            q = rnd.random()
            if q < 0.3:
                tw.append(store(ts - 3, lo, lo + P, 0, tid=tid))
            elif q < 0.6:  # (not a clear)
                tw.append(store(ts - 3, lo, hi, 0x6000 + k, tid=tid))
            else:
                tw.append(store(ts - 8, lo, hi, 0, tid=tid))
                tw.append(store(ts - 7, lo, hi, 0x7000 + k, tid=other))
            s.append(sc("munmap", ts, [lo, hi - lo], 0, tid=tid))  # ts_enter = ts - 5
        elif r < 0.85:  # mprotect: a store with the new perms, or the old (flags edited in place)
            prot = rnd.choice([1, 3])
            tw.append(store(ts - 3, lo, hi, 0x3000 + k, flags=rnd.choice([R, RW]), tid=tid))
            s.append(sc("mprotect", ts, [lo, hi - lo, prot], rnd.choice([0, 0, 0, -12]), tid=tid))
        else:  # failed: nothing to correct
            s.append(sc("munmap", ts, [lo, hi - lo], -22, tid=tid))
    return tw, s


def test_dropping_noop_exits_changes_nothing(tmp_path, monkeypatch):
    from mmtrace.model import stream

    tw, s = _threaded_scenario()
    fake = FakeTrace(tw, s)
    t = _write(tmp_path, fake, nparts=3)
    ats = list(range(0, 5000, 97)) + [10**6]
    for every in (7, 50, 10**9):
        m = Model(t, checkpoint_every=every)
        got = {at: lines(df) for _, at, df in m.sweep([(PID, at) for at in ats])}
        n_rec = sum(len(w) for w in m.source.windows(every))
        with monkeypatch.context() as mp:
            mp.setattr(stream, "_noop_exits", lambda *a, **k: None)
            ref = Model(t, checkpoint_every=every)
            want = {at: lines(df) for _, at, df in ref.sweep([(PID, at) for at in ats])}
            n_all = sum(len(w) for w in ref.source.windows(every))
        assert got == want, every
        assert n_rec < n_all  # some exits were dropped
        for at in ats[::5]:
            assert lines(m.vmas(PID, at)) == want[at]
