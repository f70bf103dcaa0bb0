"""A tracing session: the target processes, the loaded collectors, and batches out.

Used by the recorder (which writes batches to a trace) and by
:func:`mmtrace.stream` (which yields them live).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..events.decode import columns_to_arrow, rows_to_arrow, to_arrow, to_frame
from ..events.procmaps import MAPS_COLUMNS, maps_columns
from .host import KmsgReader, sample_hugepages

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
# Recording builds Arrow tables (Session.tables) and never imports pandas;
# the DataFrame forms (batch, snapshot_maps) are for mmtrace.stream().
_KMSG_COLUMNS = ["ts", "kmsg_us", "seq", "level", "facility", "msg"]
from .kernel import COMPAT_ENV, KernelError, ProbePlan, make_plan
from .loader import DEFAULT_BUFFER_MB, WRITE_PIECE_BYTES, Collector

__all__ = ["Session", "Target", "TargetError", "snapshot_maps", "snapshot_columns", "process_info", "die_with_parent"]


class TargetError(ValueError):
    """The processes or command to trace are not usable (no such pid, command not found)."""


def _is_elf32(path: str) -> bool:
    """Is ``path`` a 32-bit ELF file (EI_CLASS == ELFCLASS32)?  False when unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and head[4:5] == b"\x01"


def compat_reason(target: Target, force: bool = False) -> str:
    """Why ia32 syscalls are not to be followed for ``target``; "" to follow them.

    Following them costs every syscall of the host two programs
    (capture/kernel.py COMPAT_ENV), so they are followed when a target needs
    it: ``force`` (``record --compat``), the whole system, or a 32-bit program
    among the targets at start (the command's executable, a pid's
    /proc/PID/exe).  ``MMTRACE_COMPAT_SYSCALLS=1`` or ``=0`` decides instead.
    A 32-bit program exec'd later is then reported not modelled, with this
    reason (model/coverage.py)."""
    env = os.environ.get(COMPAT_ENV)
    if env == "0":
        return f"{COMPAT_ENV}=0"
    if env == "1" or force or target.system_wide:
        return ""
    if target.command:
        exe = target.command[0]
        exes = [exe if "/" in exe else (shutil.which(exe) or exe)]
    else:
        exes = [f"/proc/{p}/exe" for p in target.pids]
    if any(_is_elf32(e) for e in exes):
        return ""
    return ("no 32-bit program among the targets when the recording started; 'mmtrace record --compat' "
            "follows the ia32 syscalls of programs exec'd later")


@dataclass
class Target:
    """What to trace: a command to start, running pids, or (neither) the whole system."""

    command: list[str] | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def system_wide(self) -> bool:
        return self.command is None and not self.pids

    def check(self) -> None:
        """Fail early, before anything is created, with a one-line reason."""
        if self.command and self.pids:
            raise TargetError("give either -c COMMAND or -p PID, not both")
        if self.command is not None and (not self.command or not str(self.command[0]).strip()):
            # An empty command (an unset $CMD) must not turn into a whole-system recording.
            raise TargetError("the command to trace is empty: give one, or none (command=None) for the whole system")
        for pid in self.pids:
            if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
                raise TargetError(f"no process with pid {pid}")
            if _is_kernel_thread(pid):
                raise TargetError(f"pid {pid} is a kernel thread: it has no address space to trace")
        if self.command:
            exe = self.command[0]
            if "/" in exe:
                if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
                    raise TargetError(f"command not found or not executable: {exe}")
            elif shutil.which(exe) is None:
                raise TargetError(f"command not found: {exe}")


def die_with_parent(parent: int) -> None:
    """In a forked child: be SIGKILLed when the recorder dies (kill -9, crash),
    so the command never runs on untraced.

    PR_SET_PDEATHSIG (prctl(2)) survives execve, except of a set-user-ID or
    set-group-ID program, and reaches this child only, not its descendants;
    it fires when the thread that forked exits.  If the recorder is already
    gone (the fork raced its death) the child exits at once.
    """
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:
        os._exit(127)


def _is_kernel_thread(pid: int) -> bool:
    # Kernel threads have no mm: their maps file reads empty.
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            return f.read(1) == b""
    except OSError:
        return False


def process_info(pid: int) -> dict | None:
    """pid, ppid, comm and exe of a running process from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        return {"pid": pid, "ppid": ppid, "comm": comm, "exe": exe}
    except (OSError, ValueError):
        return None


def snapshot_columns(pid: int, when: str) -> dict[str, np.ndarray] | None:
    """:func:`snapshot_maps` as numpy columns (no pandas), or None."""
    t0 = time.monotonic_ns()  # CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns()
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            text = f.read()
    except (ProcessLookupError, FileNotFoundError):
        return None
    except PermissionError:
        return None
    t1 = time.monotonic_ns()
    maps = maps_columns(text.decode(errors="replace"))
    n = len(maps["start"])
    cols = {
        "pid": np.full(n, pid, dtype=np.int64),
        "when": np.full(n, when, dtype=object),
        "ts_before": np.full(n, t0, dtype=np.int64),
        "ts_after": np.full(n, t1, dtype=np.int64),
    }
    cols.update((c, maps[c]) for c in MAPS_COLUMNS)
    return cols


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def snapshot_maps(pid: int, when: str) -> pd.DataFrame | None:
    """/proc/PID/maps with CLOCK_MONOTONIC stamps taken just before and after the read.

    Columns: ``pid``, ``when``, ``ts_before``, ``ts_after`` and the columns of
    :func:`mmtrace.events.procmaps.parse_maps`.  None when the process is gone.
    """
    import pandas as pd

    cols = snapshot_columns(pid, when)
    return None if cols is None else pd.DataFrame(cols)


class Session:
    """Load the collectors for ``target`` and turn what they see into DataFrame batches.

    Use as a context manager.  ``start()`` attaches (and, for a command,
    starts it only after the probes are in place); ``batch()`` returns the
    events gathered since the last call as ``{kind: DataFrame}``.
    """

    def __init__(
        self,
        target: Target,
        *,
        buffer_mb: int = DEFAULT_BUFFER_MB,
        plan: ProbePlan | None = None,
        keep_inner: bool = False,
        stacks: bool = False,
        compat: bool = False,
    ) -> None:
        if os.geteuid() != 0:
            raise KernelError("tracing needs root (BPF and tracefs): run it with sudo")
        target.check()
        self.target = target
        self.buffer_mb = buffer_mb
        self.keep_inner = keep_inner
        self.stacks = stacks
        self._stack_tables: list[tuple[str, pa.Table]] = []
        self.plan = plan or make_plan(compat_off=compat_reason(target, force=compat))
        self.collector: Collector | None = None
        self.child: int | None = None
        self.child_status: int | None = None
        self._release_fd: int | None = None
        self.attach: list[dict] = []
        self.snapshots: list[dict[str, np.ndarray]] = []  # snapshot_columns() at attach
        self.seen: set[int] = set()  # tgids seen by fork/exec events
        self.start_ns = 0
        self.kmsg: KmsgReader | None = None
        self._huge_rows: list[dict] = []
        self.cgroup = None  # capture.cgroup.HugetlbCgroup of the command, when made
        self.hugetlb_evidence: dict = {}

    # -- lifecycle --------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> None:
        """Compile and attach the collectors (nothing is started yet)."""
        self.collector = Collector(
            self.plan,
            pids=self.target.pids,
            system_wide=self.target.system_wide,
            buffer_mb=self.buffer_mb,
            keep_inner=self.keep_inner,
            stacks=self.stacks,
        )

    def start(self) -> None:
        """Begin: snapshot the targets, and start the command if there is one."""
        if self.collector is None:
            self.load()
        self.kmsg = KmsgReader()
        self.sample_host()
        self.start_ns = time.monotonic_ns()
        if self.target.command:
            self._make_cgroup()
            self._spawn_blocked(self.target.command)
            self.collector.add_pid(self.child)
            self._attach(self.child)
            os.write(self._release_fd, b"g")
            os.close(self._release_fd)
            self._release_fd = None
        elif self.target.pids:
            for pid in self.target.pids:
                self._attach(pid)
        else:
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) != os.getpid():
                    self._attach(int(name))

    def _attach(self, pid: int) -> None:
        snap = snapshot_columns(pid, "attach")
        info = process_info(pid)
        if info is None or snap is None or len(snap["start"]) == 0:
            return  # gone already, or a kernel thread
        info["ts"] = int(snap["ts_before"][0])
        info["tree"] = 0  # learnt from the first event that names current->mm
        self.attach.append(info)
        self.snapshots.append(snap)

    def _make_cgroup(self) -> None:
        """A hugetlb cgroup of the command's own, when the collectors can read it
        (detect/hugetlb.py then has exact evidence); the trace says which was used."""
        from . import cgroup

        ev = {"counters": "hstate (global): at syscall entry and exit, hugetlb faults, exit_mmap"
                          + (", a fault's SIGBUS" if "signal:signal_generate" in self.plan.tracepoints else "")}
        if not self.plan.features.get("hugetlb_cgroup"):
            ev["cgroup"] = None
            ev["cgroup_reason"] = "this kernel's BTF lacks the hugetlb cgroup reservation counter"
        else:
            self.cgroup, reason = cgroup.create()
            ev["cgroup"] = self.cgroup.path if self.cgroup else None
            ev["cgroup_reason"] = reason
        self.hugetlb_evidence = ev

    def _spawn_blocked(self, argv: list[str]) -> None:
        """Fork the command, held before exec until the recorder says go.

        The child shares our stdin/stdout/stderr, so the command's terminal I/O
        passes through untouched.
        """
        r, w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(w)
                if self.cgroup is not None:
                    self.cgroup.join()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                die_with_parent(parent)
                if os.read(r, 1) != b"g":
                    os._exit(127)
                os.close(r)
                os.execvp(argv[0], argv)
            except BaseException as e:  # noqa: BLE001 - must never return into the recorder
                try:
                    os.write(2, f"mmtrace: cannot run {argv[0]}: {e}\n".encode())
                finally:
                    os._exit(127)
        os.close(r)
        self.child = pid
        self._release_fd = w

    def child_exited(self) -> bool:
        """True once the command has exited (its status is in child_status)."""
        if self.child is None:
            return False
        if self.child_status is not None:
            return True
        pid, status = os.waitpid(self.child, os.WNOHANG)
        if pid == 0:
            return False
        self.child_status = os.waitstatus_to_exitcode(status)
        return True

    def targets_alive(self) -> bool:
        """For -p: is any target (or a traced child) still running?"""
        return any(os.path.exists(f"/proc/{p}") for p in set(self.target.pids) | self.seen)

    def poll(self, timeout_ms: int = 100) -> None:
        self.collector.poll(timeout_ms)

    def _take(self) -> tuple[dict[str, list[np.ndarray]], dict[int, str] | None]:
        """Drain, then hand over what was drained: by kind, the arrays as drained."""
        c = self.collector
        c.drain()
        raw = c.take()
        if "proc" in raw:  # rare records: one array
            proc = _joined(raw["proc"])
            raw["proc"] = [proc]
            self.seen.update(int(x) for x in proc["child_tgid"][proc["what"] == 1])  # fork
            gone = proc["tgid"][(proc["what"] == 3) & ((proc["flags"] & 0x4) != 0)]  # exit, group dead
            self.seen.difference_update(int(x) for x in gone)
        if c.stack_table is not None:
            self._note_stacks(raw)
        return raw, (c.fn_names() if "tree_write" in raw else None)

    def _note_stacks(self, raw: dict[str, list[np.ndarray]]) -> None:
        """record -g: the stacks the drained records name for the first time, and
        the files noted since (capture/stacks.py), for :meth:`host_tables`."""
        c = self.collector
        if "proc" in raw:
            p = raw["proc"][0]
            c.files.note_exec(p["filename"][p["what"] == 2].tolist())  # exec
        c.files.search_missed()
        ids = [a["stack_id"] for k in ("syscall", "proc") for a in raw.get(k, ())]
        new = c.stack_table.note(np.concatenate(ids)) if ids else None
        if new is not None:
            self._stack_tables.append(("stacks", new))
        files = c.files.take()
        if files is not None:
            self._stack_tables.append(("procfs/files", files))

    def stack_stats(self) -> dict:
        """The trace's ``stacks`` metadata: enabled, map_entries, distinct, captured, lost by reason."""
        st = self.collector.stack_table if self.collector else None
        return st.stats() if st is not None else {"enabled": False}

    def batch(self) -> dict[str, pd.DataFrame]:
        """Events gathered since the last call, decoded, by kind."""
        raw, fns = self._take()
        return {k: to_frame(k, _joined(v), fn_names=fns, syscalls=self.plan.syscalls) for k, v in raw.items()}

    def tables(self) -> Iterator[tuple[str, Iterator[pa.Table]]]:
        """What :meth:`batch` gives, as the recorder writes it (no pandas): by
        kind, Arrow tables of about WRITE_PIECE_BYTES of records each, decoded
        one at a time as the iterator is consumed (so a flush holds one piece
        decoded, and each drained array only until its last piece is out)."""
        raw, fns = self._take()
        for k in list(raw):
            yield k, (to_arrow(k, a, fn_names=fns, syscalls=self.plan.syscalls)
                      for a in record_pieces(raw.pop(k), WRITE_PIECE_BYTES))

    def sample_host(self) -> None:
        """Take a sample of the hugetlb pool counters (cheap; call often)."""
        self._huge_rows.extend(sample_hugepages())

    def host_tables(self) -> dict[str, pa.Table]:
        """Kernel log lines and hugetlb pool samples since the last call, by table name."""
        out = {}
        if self.kmsg is not None:
            k = self.kmsg.read()
            if k:
                out["procfs/kmsg"] = rows_to_arrow(k, _KMSG_COLUMNS)
        if self._huge_rows:
            out["procfs/hugepages"] = rows_to_arrow(self._huge_rows)
            self._huge_rows = []
        if self._stack_tables:  # record -g
            import pyarrow as pa

            for name in {n for n, _ in self._stack_tables}:
                out[name] = pa.concat_tables([t for n, t in self._stack_tables if n == name])
            self._stack_tables = []
        return out

    def attach_tables(self) -> dict[str, pa.Table]:
        """What was known at attach: ``procfs/attach`` (one row per process:
        pid, ppid, comm, exe, ts, tree) and ``procfs/maps`` (their snapshots)."""
        if not self.attach:
            return {}
        return {"procfs/attach": rows_to_arrow(self.attach),
                "procfs/maps": columns_to_arrow(_concat(self.snapshots))}

    def stop_snapshots(self) -> pa.Table | None:
        """Snapshot every traced process still alive, for checking a model at the end."""
        pids = set(self.target.pids) | self.seen
        if self.child is not None and self.child_status is None:
            pids.add(self.child)
        snaps = [s for s in (snapshot_columns(p, "stop") for p in sorted(pids)) if s is not None]
        return columns_to_arrow(_concat(snaps)) if snaps else None

    def lost(self) -> dict[str, int]:
        return self.collector.lost() if self.collector else {}

    def folded(self) -> int:
        return self.collector.folded() if self.collector else 0

    def other_trees(self) -> int:
        return self.collector.other_trees() if self.collector else 0

    def kill_child(self, sig: int = signal.SIGTERM) -> None:
        if self.child is not None and self.child_status is None:
            try:
                os.kill(self.child, sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()  # EBUSY (ignored) while a descendant of the command lives on
        if self.kmsg is not None:
            self.kmsg.close()
            self.kmsg = None
        if self._release_fd is not None:
            # Never started: let the held child die rather than run untraced.
            os.close(self._release_fd)
            self._release_fd = None
        if self.collector is not None:
            self.collector.close()
            self.collector = None


def record_pieces(chunks: list[np.ndarray], limit: int) -> Iterator[np.ndarray]:
    """The records of ``chunks``, in order, as arrays of the fewest whole
    records that make ``limit`` bytes (the last one fewer).  Consumes ``chunks``: an array is let go as soon as its
    last record is handed on, so what the caller holds is one piece plus the
    arrays not reached yet.  Small arrays (one drain's worth) are joined into
    a piece, large ones (a ring emptied at once) are cut into views."""
    chunks.reverse()  # pop() from the end: in order, without shifting the list
    group: list[np.ndarray] = []
    size = 0
    part = None
    while chunks:
        a = chunks.pop()
        start = 0
        while start < len(a):
            part = a[start:start + max(1, (limit - size) // a.itemsize)]
            start += len(part)
            group.append(part)
            size += part.nbytes
            if size >= limit:
                yield _joined(group)
                group, size = [], 0
        a = part = None  # (the last view would keep the array until the next one)
    if group:
        yield _joined(group)


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """One array of ``arrays``' records, in order (no copy for one)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
