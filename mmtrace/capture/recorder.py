"""``mmtrace record``: a session written to a trace directory, safely.

- Nothing is created before the target and the kernel are checked, and a
  failure before recording starts removes what was created: no half-written
  trace ever claims to be complete.
- Parts are flushed every second; metadata.json says ``"complete": true``
  only after a clean stop.  Ctrl-C / SIGTERM stop cleanly and keep all.
- Lost events are counted in the kernel, shown live and stored.
- Under sudo, every file belongs to the invoking user.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..trace.pool import trim_malloc, use_system_allocator

use_system_allocator()  # before the writer imports pyarrow: see trace/pool.py

from ..trace.writer import DiskFull, TraceWriter  # noqa: E402 (after the pool is chosen)
from .kernel import KernelError
from .loader import DEFAULT_BUFFER_MB, EMPTY_ENV, PENDING_LIMIT, empty_groups, raise_priority
from .session import Session, Target

__all__ = ["RecordOptions", "RecordResult", "record", "RecordError", "check_options"]


# Records drained but not written that make the recorder flush before its
# interval (about 50k tree writes): half of what the drain thread holds at
# most (loader.PENDING_LIMIT), so the recorder flushes before draining stops.
FLUSH_BYTES = PENDING_LIMIT // 2


class RecordError(RuntimeError):
    """Recording could not start or went wrong; the message is for the user.

    ``code`` is the exit status ``mmtrace record`` gives it: 2 a bad option
    or target, 3 recording cannot work on this host, 4 the trace cannot be
    written.
    """

    def __init__(self, msg: str, code: int = 3) -> None:
        super().__init__(msg)
        self.code = code


# ringbuf_map_alloc() (kernel/bpf/ringbuf.c) takes a power-of-two, page
# aligned max_entries, a __u32: 2^31 bytes is the largest ring there is.
_RING_MAX_BYTES = 1 << 31


def _mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_options(opts: "RecordOptions") -> None:
    """Refuse options that cannot work, before anything is compiled or created
    (RecordError with code 2, the message naming the fix)."""
    import math

    from .loader import ring_sizes

    mb = opts.buffer_mb
    if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
        raise RecordError(f"--buffer-mb {mb}: not a positive whole number of MiB (default {DEFAULT_BUFFER_MB})", 2)
    if mb & (mb - 1):
        lo = 1 << (mb.bit_length() - 1)
        raise RecordError(f"--buffer-mb {mb}: BPF ring buffers are a power of two in size: use {lo} or {lo * 2}", 2)
    if mb << 20 > _RING_MAX_BYTES:
        raise RecordError(f"--buffer-mb {mb}: the kernel's largest BPF ring buffer is {_RING_MAX_BYTES >> 20} MiB: "
                          f"use {_RING_MAX_BYTES >> 20} or less", 2)
    total = sum(ring_sizes(mb).values())
    avail = _mem_available()
    if avail is not None and total > avail // 2:
        fit = 1
        while sum(ring_sizes(fit * 2).values()) <= avail // 2 and fit * 2 <= mb:
            fit *= 2
        raise RecordError(f"--buffer-mb {mb}: the ring buffers would take {total / (1 << 30):.1f} GiB, more than "
                          f"half the memory available ({avail / (1 << 30):.1f} GiB): use {fit} or less", 2)
    for name, v in (("--duration", opts.duration), ("flush interval", opts.flush_interval)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise RecordError(f"{name} {v}: must be a finite number of seconds above 0", 2)
    if opts.command is not None and (not opts.command or not str(opts.command[0]).strip()):
        raise RecordError("the command to record is empty (an unset $CMD?): give one, or no command "
                          "and no -p to record the whole system", 2)


@dataclass
class RecordOptions:
    output: Path = Path("mmtrace.data")
    command: list[str] | None = None
    pids: list[int] = field(default_factory=list)
    duration: float | None = None
    buffer_mb: int = DEFAULT_BUFFER_MB
    keep_inner: bool = False  # keep inner mas_wr_* events identical to their outer store
    stacks: bool = False  # record -g: user stacks of syscalls, forks, execs, exits (capture/stacks.py)
    compat: bool = False  # record --compat: follow ia32 syscalls even with no 32-bit target at start
    flush_interval: float = 1.0
    progress: bool | None = None  # None: only when stderr is a terminal
    argv: list[str] = field(default_factory=list)  # the mmtrace command line, for metadata


@dataclass
class RecordResult:
    path: Path
    events: dict[str, int]
    lost: dict[str, int]
    duration_s: float
    exit_status: int | None  # the command's exit status, for -c
    stop_reason: str
    bytes_written: int
    stacks: dict = field(default_factory=dict)  # the trace's "stacks" metadata (record -g)


def _sudo_owner() -> tuple[int, int] | None:
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() == 0 and uid and gid and uid.isdigit() and gid.isdigit():
        return int(uid), int(gid)
    return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _vm_settings() -> dict:
    """Kernel settings the analyses need to repeat the kernel's own searches."""
    from .kernel import mmap_min_addr

    out = mmap_min_addr()
    gap = 256  # stack_guard_gap, in pages (mm/mmap.c), unless set on the command line
    try:
        for arg in Path("/proc/cmdline").read_text().split():
            if arg.startswith("stack_guard_gap="):
                gap = int(arg.split("=", 1)[1])
    except (OSError, ValueError):
        pass
    out["stack_guard_gap_pages"] = gap
    return out


def _prepare_output(path: Path) -> None:
    """Keep one previous trace as PATH.old (like perf.data.old); refuse to clobber other things."""
    if not path.exists():
        return
    if not (path / "metadata.json").exists():
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            return
        raise RecordError(f"{path} exists and is not an mmtrace trace: choose another -o", 2)
    old = path.with_name(path.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(path, old)


class _Stop:
    """Signal flag: the first SIGINT/SIGTERM asks for a clean stop."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.signum: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.reason is None:
            self.reason = signal.Signals(signum).name
            self.signum = signum


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.width = 0

    def show(self, elapsed: float, events: int, rate: float, lost: int, nbytes: int) -> None:
        if not self.enabled:
            return
        lost_s = f"LOST {lost:,}" if lost else "lost 0"
        line = (
            f"mmtrace: {elapsed:6.1f}s  {events:>12,} events  {rate:>10,.0f} ev/s  {lost_s}  "
            f"{nbytes / 1e6:8.1f} MB"
        )
        self.width = max(self.width, len(line))
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()


def record(opts: RecordOptions) -> RecordResult:
    """Record ``opts`` target into ``opts.output``; see the module docstring."""
    check_options(opts)
    try:
        empty_groups(os.environ.get(EMPTY_ENV))  # the benchmarks' switch (capture/loader.py)
    except ValueError as e:
        raise RecordError(str(e), 2) from e
    target = Target(command=opts.command, pids=list(opts.pids))
    try:
        session = Session(target, buffer_mb=opts.buffer_mb, keep_inner=opts.keep_inner, stacks=opts.stacks,
                          compat=opts.compat)
    except KernelError as e:
        raise RecordError(str(e), 3) from e
    except ValueError as e:  # TargetError: no such pid, command not found
        raise RecordError(str(e), 2) from e
    # Arrow's default allocator (mimalloc) keeps freed memory for reuse: ~60 MB
    # more at full speed.  The system allocator gives big blocks back at once.
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    out = Path(opts.output)
    owner = _sudo_owner()
    try:
        _prepare_output(out)
        writer = TraceWriter(out, owner=owner)
    except OSError as e:
        raise RecordError(f"cannot create the trace {out}: {e.strerror or e}: choose a writable -o", 4) from e
    meta = {
        "complete": False,
        "stop_reason": None,
        "mmtrace_version": __version__,
        "kernel_release": platform.release(),
        "kernel_version": platform.version(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "clock": "CLOCK_MONOTONIC",
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        **_vm_settings(),
        "command_line": opts.argv,
        "target": {"command": opts.command, "pids": opts.pids, "system_wide": target.system_wide},
        "probe_plan": session.plan.to_dict(),
        "buffer_mb": opts.buffer_mb,
        "inner_stores": "kept" if opts.keep_inner else "folded",
        "other_trees": "kept" if opts.keep_inner else "left out",
        "lost": {},
        "events": {},
    }
    stop = _Stop()
    old_handlers = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    started = False
    nice_before = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's, put back at the end
    try:
        try:
            session.load()
        except Exception as e:  # BCC raises bare Exception on compile/attach failures
            raise RecordError(f"loading the BPF collectors failed: {e} (run 'mmtrace doctor')") from e
        session.start()
        started = True
        # The command is forked: from now on the recorder may outrank it (loader.RECORDER_NICE).
        meta["recorder_nice"] = raise_priority()
        # Whether BCC compiled this time, or the module came from the cache.
        meta["bpf_module"] = "compiled" if session.collector.compiled else "cached"
        if session.collector.empty_programs:
            # a benchmark of the hooks: no events of these program groups by design
            meta["empty_programs"] = list(session.collector.empty_programs)
        meta["start_ns"] = session.start_ns
        meta["hugetlb_evidence"] = session.hugetlb_evidence
        meta["start_wall"] = time.time()
        writer.write_metadata(meta)
        for table, at in session.attach_tables().items():
            writer.append(table, at)
        return _loop(opts, session, writer, meta, stop)
    except BaseException:
        if not started:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        session.kill_child(signal.SIGKILL) if not started else None
        session.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
        try:  # a caller of record() in-process keeps its priority (raising nice is always allowed)
            os.setpriority(os.PRIO_PROCESS, 0, nice_before)
        except OSError:
            pass


def _loop(opts: RecordOptions, session: Session, writer: TraceWriter, meta: dict, stop: _Stop) -> RecordResult:
    progress = _Progress(sys.stderr.isatty() if opts.progress is None else opts.progress)
    t0 = time.monotonic()
    last_flush = t0
    counts: dict[str, int] = {}
    total = 0
    rate = 0.0
    last_total, last_t = 0, t0
    reason = None
    forwarded = False
    grace_deadline = None

    def flush() -> None:
        nonlocal total
        trim_malloc()  # what the last flush freed, before this one takes more (trace/pool.py)
        for kind, pieces in session.tables():
            n = writer.append_pieces(f"events/{kind}", pieces)
            counts[kind] = counts.get(kind, 0) + n
            total += n
        for table, df in session.host_tables().items():
            writer.append(table, df)

    last_sample = t0

    try:
        while True:
            # Behind (a flush's worth waits): flush again at once.  The 20 ms
            # pause between flushes had the writer busy ~80% of the time on
            # the mmap loop at full speed, and the drain's budget was reached
            # while records piled up in the rings until one was half full
            # and taken whole: 40-67 MB held at once instead of 16.
            c = session.collector
            session.poll(0 if c.pending_bytes() + c.backlog() >= FLUSH_BYTES else 20)
            now = time.monotonic()
            if now - last_sample >= 0.1:
                session.sample_host()
                last_sample = now
            if stop.reason and session.child is not None and session.child_status is None:
                # The command may not have received the signal (SIGTERM sent to
                # us alone): pass it on, then give it a moment to exit.
                if not forwarded:
                    session.kill_child(stop.signum or signal.SIGTERM)
                    forwarded = True
                    grace_deadline = now + 5.0
            if session.child_exited():
                reason = reason or _exit_reason(session.child_status)
            elif stop.reason and (session.child is None or (grace_deadline and now > grace_deadline)):
                reason = f"stopped by {stop.reason}"
            elif opts.duration is not None and now - t0 >= opts.duration:
                reason = f"duration {opts.duration:g}s reached"
            elif session.target.pids and not session.targets_alive():
                reason = "traced processes exited"
            # Also flush early at full speed: what waits for the writer (and the
            # copies decoding makes of it) stays bounded, not a second's worth.
            if now - last_flush >= opts.flush_interval or reason or \
                    session.collector.pending_bytes() >= FLUSH_BYTES:
                flush()
                last_flush = now
                lost = session.lost()
                meta.update(lost=lost, events=dict(counts), stop_ns=time.monotonic_ns(), stacks=session.stack_stats())
                writer.write_metadata(meta)
                if now - last_t > 0:
                    rate = (total - last_total) / (now - last_t)
                last_total, last_t = total, now
                progress.show(now - t0, total, rate, sum(lost.values()), writer.bytes_written)
            if reason and not (stop.reason and session.child is not None and not session.child_exited() and reason.startswith("stopped") is False):
                break
        stops = session.stop_snapshots()
        if stops is not None:
            writer.append("procfs/maps", stops)
        session.poll(0)
        session.sample_host()
        drain_to_end(session.collector, flush)
        lost = session.lost()
        meta.update(
            complete=True,
            folded_inner_stores=session.folded(),
            other_tree_writes=session.other_trees(),
            stop_reason=reason,
            lost=lost,
            events=dict(counts),
            stop_ns=time.monotonic_ns(),
            stop_wall=time.time(),
            exit_status=session.child_status,
            stacks=session.stack_stats(),
        )
        writer.write_metadata(meta)
    except DiskFull as e:
        progress.done()
        session.kill_child()
        reason = f"disk full: {e}"
        meta.update(stop_reason=reason, events=dict(counts), lost=session.lost())
        try:
            writer.write_metadata(meta)
        except OSError:
            pass
        raise RecordError(
            f"{writer.path}: disk full; recording stopped. Everything flushed before is kept "
            f"({sum(counts.values()):,} events), marked incomplete",
            4,
        ) from e
    progress.done()
    return RecordResult(
        path=writer.path,
        events=dict(counts),
        lost=lost,
        duration_s=time.monotonic() - t0,
        exit_status=session.child_status,
        stop_reason=reason,
        bytes_written=writer.bytes_written,
        stacks=meta.get("stacks", {}),
    )


def drain_to_end(collector, flush) -> None:
    """At the stop: write every record submitted so far, then leave none behind.

    The drain thread stops first, and only then are the last batches taken:
    a batch it moved out of a ring after our last take (it runs while a
    flush writes) would otherwise stay in ``collector``'s pending lists,
    neither written nor counted lost.  Past PENDING_LIMIT the drain takes a
    budget at a time: take what still waits in the rings that way while it
    makes progress (a process traced with -p may still be producing), then
    the rest at once.  ``flush()`` drains, takes everything pending and writes
    it (Collector.drain, Collector.take)."""
    collector.stop_draining()
    prev = None
    for _ in range(64):
        flush()
        left = collector.backlog()
        if not left or (prev is not None and left >= prev):
            break
        prev = left
    if collector.backlog():  # (each flush took all that was pending: the thread is stopped)
        collector.pending_limit = None
        flush()


def summary_line(res: RecordResult) -> str:
    """perf-style closing line."""
    n = sum(res.events.values())
    lost = sum(res.lost.values())
    lost_s = f", LOST {lost:,} events ({json.dumps(res.lost)})" if lost else ", 0 lost"
    st = res.stacks or {}
    if st.get("enabled"):  # record -g: stacks lost like events (a collision in the stack map)
        sl = sum(v for k, v in st.get("lost", {}).items() if k != "EFAULT")
        lost_s += f"; {st.get('distinct', 0):,} stacks" + (f", LOST the stack of {sl:,} records ({json.dumps(st['lost'])})"
                                                            if sl else ", 0 stacks lost")
    return (
        f"[ mmtrace record: {res.stop_reason}; wrote {res.bytes_written / 1e6:.2f} MB to "
        f"{res.path} ({n:,} events in {res.duration_s:.1f}s{lost_s}) ]"
    )


def _exit_reason(status: int | None) -> str:
    """How the command ended, as the summary line says it (``os.waitstatus_to_exitcode``:
    negative for a signal): "command exited", "... with status 3", "command killed by SIGSEGV"."""
    if status is None or status == 0:
        return "command exited"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"command killed by {name}"
    return f"command exited with status {status}"
