"""The recorder's last drain (capture/recorder.drain_to_end): every record that left a
ring is written, whatever the drain thread did while the last flush ran.

Found under load (mmloop at full speed beside a CPU hog): the drain thread moved a
batch into the pending lists after the recorder's last take and before it stopped;
the stop then saw empty rings and wrote the trace without that batch, 0 lost."""

from __future__ import annotations

from mmtrace.capture.recorder import drain_to_end


class FakeCollector:
    """Rings as record counts; drain() moves at most ``budget`` (pending_limit) of them."""

    def __init__(self, ring: int, pending: int, limit: int | None, produce: int = 0) -> None:
        self.ring, self.pending, self.pending_limit, self.produce = ring, pending, limit, produce
        self.draining = True
        self.moved = pending  # records that have left a ring so far

    def stop_draining(self) -> None:
        self.draining = False

    def drain(self) -> None:
        room = self.ring if self.pending_limit is None else max(0, min(self.ring, self.pending_limit - self.pending))
        self.ring -= room
        self.pending += room
        self.moved += room
        self.ring += self.produce  # a process traced with -p goes on producing

    def take(self) -> int:
        n, self.pending = self.pending, 0
        return n

    def backlog(self) -> int:
        return self.ring

    def pending_bytes(self) -> int:
        return self.pending


def _run(c: FakeCollector) -> int:
    written = []

    def flush():
        assert not c.draining  # the thread is stopped before the last takes
        c.drain()
        written.append(c.take())

    drain_to_end(c, flush)
    return sum(written)


def test_a_batch_the_drain_thread_moved_after_the_last_take_is_written():
    c = FakeCollector(ring=0, pending=650, limit=1000)  # the rings are empty, the batch is not
    assert _run(c) == 650 == c.moved
    assert c.pending == 0 and c.ring == 0


def test_what_waits_in_the_rings_past_the_budget_is_written():
    c = FakeCollector(ring=10_500, pending=300, limit=1000)
    assert _run(c) == 10_800 == c.moved
    assert c.ring == 0 and c.pending == 0


def test_a_producer_that_goes_on_is_cut_off_but_nothing_taken_is_dropped():
    c = FakeCollector(ring=5_000, pending=0, limit=1000, produce=1000)  # -p: never runs dry
    got = _run(c)  # it ends (no progress while the producer keeps pace, then one unlimited take)
    assert got == c.moved and c.pending == 0  # every record out of a ring is written
    assert got >= 5_000  # what waited at the stop is in
