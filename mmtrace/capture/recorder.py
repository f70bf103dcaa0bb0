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
from ..trace.writer import DiskFull, TraceWriter
from .kernel import KernelError
from .loader import DEFAULT_BUFFER_MB
from .session import Session, Target

__all__ = ["RecordOptions", "RecordResult", "record", "RecordError"]


class RecordError(RuntimeError):
    """Recording could not start or went wrong; the message is for the user."""


@dataclass
class RecordOptions:
    output: Path = Path("mmtrace.data")
    command: list[str] | None = None
    pids: list[int] = field(default_factory=list)
    duration: float | None = None
    buffer_mb: int = DEFAULT_BUFFER_MB
    keep_inner: bool = False  # keep inner mas_wr_* events identical to their outer store
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
        raise RecordError(f"{path} exists and is not an mmtrace trace: choose another -o")
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
    target = Target(command=opts.command, pids=list(opts.pids))
    try:
        session = Session(target, buffer_mb=opts.buffer_mb, keep_inner=opts.keep_inner)
    except (KernelError, ValueError) as e:
        raise RecordError(str(e)) from e
    out = Path(opts.output)
    _prepare_output(out)
    owner = _sudo_owner()
    writer = TraceWriter(out, owner=owner)
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
    try:
        try:
            session.load()
        except Exception as e:  # BCC raises bare Exception on compile/attach failures
            raise RecordError(f"loading the BPF collectors failed: {e} (run 'mmtrace doctor')") from e
        session.start()
        started = True
        if session.collector.empty_programs:
            meta["empty_programs"] = True  # a benchmark of the hooks: no events by design
        meta["start_ns"] = session.start_ns
        meta["start_wall"] = time.time()
        writer.write_metadata(meta)
        if session.attach:
            import pandas as pd

            writer.append("procfs/attach", pd.DataFrame(session.attach))
            writer.append("procfs/maps", pd.concat(session.snapshots, ignore_index=True))
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
        for kind, df in session.batch().items():
            writer.append(f"events/{kind}", df)
            counts[kind] = counts.get(kind, 0) + len(df)
            total += len(df)
        for table, df in session.host_tables().items():
            writer.append(table, df)

    last_sample = t0

    try:
        while True:
            session.poll(20)
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
                reason = reason or "command exited"
            elif stop.reason and (session.child is None or (grace_deadline and now > grace_deadline)):
                reason = f"stopped by {stop.reason}"
            elif opts.duration is not None and now - t0 >= opts.duration:
                reason = f"duration {opts.duration:g}s reached"
            elif session.target.pids and not session.targets_alive():
                reason = "traced processes exited"
            if now - last_flush >= opts.flush_interval or reason:
                flush()
                last_flush = now
                lost = session.lost()
                meta.update(lost=lost, events=dict(counts), stop_ns=time.monotonic_ns())
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
        flush()
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
            f"({sum(counts.values()):,} events), marked incomplete"
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
    )


def summary_line(res: RecordResult) -> str:
    """perf-style closing line."""
    n = sum(res.events.values())
    lost = sum(res.lost.values())
    lost_s = f", LOST {lost:,} events ({json.dumps(res.lost)})" if lost else ", 0 lost"
    return (
        f"[ mmtrace record: {res.stop_reason}; wrote {res.bytes_written / 1e6:.2f} MB to "
        f"{res.path} ({n:,} events in {res.duration_s:.1f}s{lost_s}) ]"
    )
