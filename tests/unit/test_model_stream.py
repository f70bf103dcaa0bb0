"""The windowed replay on a trace directory with many parts: same answers whatever the window size."""

from __future__ import annotations

import random

import pandas as pd

import mmtrace
from mmtrace.model import Model, tree_frame
from mmtrace.trace.writer import TraceWriter
from tests.unit.test_model import MT, PID, P, A, FakeTrace, lines, sc, store


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
