"""Compile the collectors with BCC, attach them, and drain their ring buffers.

With session.py, the only code that imports bcc.  There is no Python code
per event: each kind has its own ring of fixed-size records, drained on a
timer as numpy arrays (ring.py); decoding to DataFrames is vectorised too
(mmtrace.events.decode).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

import numpy as np

from ..events.schema import KINDS
from .kernel import COLLECTOR_FILES, KernelError, ProbePlan, collectors_dir
from .ring import RingReader

__all__ = ["Collector", "BccMissing", "program_source", "ring_sizes", "DEFAULT_BUFFER_MB"]

# Ring for tree writes, in MiB; at ~1 M events/s (160 bytes each) it holds
# 200 ms, ten times the drain period.
DEFAULT_BUFFER_MB = 32


def ring_sizes(buffer_mb: int) -> dict[str, int]:
    """Bytes of ring buffer per kind: tree writes get ``buffer_mb``, rarer kinds less."""
    mib = 1 << 20
    return {
        "tree_write": buffer_mb * mib,
        "syscall": max(1, buffer_mb // 4) * mib,
        "unmapped_area": max(1, buffer_mb // 8) * mib,
        "proc": max(1, buffer_mb // 16) * mib,
        "exit_mmap": mib // 4,
        "vma_store": mib // 4,
        "fault": max(1, buffer_mb // 8) * mib,
        "hugetlb": max(1, buffer_mb // 8) * mib,
    }


def _pid_max() -> int:
    """The highest pid + 1 (kernel.pid_max); the traced-set bitmap covers these."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 22  # PID_MAX_LIMIT on 64-bit


class BccMissing(KernelError):
    """The bcc Python module (Debian: python3-bpfcc) is not importable."""


def _import_bcc():
    try:
        import bcc  # noqa: F401
    except ImportError as e:
        raise BccMissing(
            "the BCC Python module is missing: install the distribution package "
            "'python3-bpfcc' (never 'pip install bcc', an unrelated project), "
            "then run ./setup.sh again"
        ) from e
    return bcc


def program_source() -> str:
    """The BPF C program: the collector files concatenated (BCC rewrites one file)."""
    d = collectors_dir()
    parts = []
    for name in COLLECTOR_FILES:
        parts.append(f"/* ---- {name} ---- */\n")
        parts.append((d / name).read_text())
    return "".join(parts)


class Collector:
    """The loaded BPF program.

    ``poll()`` waits, then moves records out of the rings (freeing their
    space); ``take()`` hands them over as numpy record arrays by kind.
    """

    def __init__(
        self,
        plan: ProbePlan,
        *,
        pids: list[int] | None = None,
        system_wide: bool = False,
        buffer_mb: int = DEFAULT_BUFFER_MB,
        self_tgid: int | None = None,
        keep_inner: bool = False,
    ) -> None:
        bcc = _import_bcc()
        if buffer_mb < 1 or buffer_mb & (buffer_mb - 1):
            raise ValueError("--buffer-mb must be a power of two (ring buffers need it)")
        self.plan = plan
        self.ring_bytes = ring_sizes(buffer_mb)
        page = os.sysconf("SC_PAGE_SIZE")
        cflags = plan.cflags() + [
            f"-I{collectors_dir()}",
            f"-DMMT_SELF_TGID={self_tgid if self_tgid is not None else os.getpid()}",
            # Kernel headers of another release warn about things we never use.
            "-Wno-unused-value",
            "-Wno-pointer-sign",
            "-Wno-compare-distinct-pointer-types",
            "-Wno-gnu-variable-sized-type-not-at-end",
            "-Wno-address-of-packed-member",
            "-Wno-tautological-compare",
            "-Wno-unknown-warning-option",
            "-Wno-visibility",
        ]
        cflags += [f"-DMMT_RB_PAGES_{k}={n // page}" for k, n in self.ring_bytes.items()]
        cflags.append(f"-DMMT_TRACED_WORDS={_pid_max() // 64 + 1}")
        if system_wide:
            cflags.append("-DMMT_TRACE_ALL")
        if keep_inner:
            cflags.append("-DMMT_KEEP_ALL")
        # For benchmarks only (overhead.py's mmtrace-empty-programs): attach
        # everything, record nothing, to measure what the hooks alone cost.
        self.empty_programs = os.environ.get("MMTRACE_EMPTY_PROGRAMS") == "1"
        if self.empty_programs:
            cflags.append("-DMMT_EMPTY_PROGRAMS")
            print("mmtrace: warning: MMTRACE_EMPTY_PROGRAMS=1: every BPF program returns at once; "
                  "nothing is recorded (this measures the hooks alone)", file=sys.stderr)
        self.cflags = cflags
        if plan.headers:
            os.environ["BCC_KERNEL_SOURCE"] = plan.headers
        self.bpf = bcc.BPF(text=program_source().encode(), cflags=cflags)
        # The traced set must be in place before anything can fork.
        self._traced = self.bpf[b"traced"]
        self._traced_bits = self.bpf[b"traced_bits"]
        for pid in pids or ():
            self.add_pid(pid)
        self._rings = {
            k: RingReader(self.bpf[f"rb_{k}".encode()].map_fd, n, KINDS[k].dtype)
            for k, n in self.ring_bytes.items()
        }
        self._pending: dict[str, list[np.ndarray]] = {k: [] for k in self._rings}
        # Drain on our own thread, every few ms, so that writing Parquet on
        # the caller's thread never leaves the rings to fill up.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain_loop, name="mmtrace-drain", daemon=True)
        self._thread.start()

    def add_pid(self, tgid: int) -> None:
        """Add a process (and, through fork, its future children) to the traced set."""
        self._traced[ctypes.c_uint32(tgid)] = ctypes.c_uint8(1)
        # Every tgid of the hash, this one included: our read-modify-write of
        # a bitmap word can undo a bit the kernel set at that instant for a
        # traced process's new child; the kernel adds children to the hash
        # first, so the hash puts any such bit back.
        self._set_bits([int(k.value) for k in self._traced.keys()])

    def _set_bits(self, tgids: list[int]) -> None:
        size = self._traced_bits.max_entries
        for tgid in tgids:
            word, bit = divmod(tgid, 64)
            if word >= size:
                continue  # the kernel side falls back to the hash
            key = ctypes.c_int(word)
            old = int(self._traced_bits[key].value)
            if not old >> bit & 1:
                self._traced_bits[key] = ctypes.c_uint64(old | 1 << bit)

    def poll(self, timeout_ms: int = 100) -> None:
        """Wait ``timeout_ms`` (records are submitted without wakeups; a thread
        drains meanwhile), then drain once more."""
        if timeout_ms > 0:
            time.sleep(timeout_ms / 1000)
        self.drain()

    def drain(self) -> None:
        """Copy everything submitted so far out of the rings, freeing their space."""
        with self._lock:
            for k, ring in self._rings.items():
                arr = ring.read()
                if len(arr):
                    self._pending[k].append(arr)

    def _drain_loop(self, period: float = 0.005) -> None:
        while not self._stop.wait(period):
            self.drain()

    def take(self) -> dict[str, np.ndarray]:
        """Hand over the records drained so far, as numpy arrays by kind."""
        with self._lock:
            pending = self._pending
            self._pending = {k: [] for k in self._rings}
        return {k: np.concatenate(p) if len(p) > 1 else p[0] for k, p in pending.items() if p}

    def pending_count(self) -> int:
        return sum(len(a) for parts in self._pending.values() for a in parts)

    def lost(self) -> dict[str, int]:
        """Records dropped because the ring buffer was full, by kind (summed over CPUs)."""
        table = self.bpf[b"lost"]
        out = {}
        for kind in KINDS.values():
            vals = table[ctypes.c_int(kind.id)]
            out[kind.name] = int(sum(vals))
        return out

    def folded(self) -> int:
        """Inner mas_wr_* stores folded into the identical outer store (not lost: redundant)."""
        return int(sum(self.bpf[b"stats"][ctypes.c_int(0)]))

    def other_trees(self) -> int:
        """Writes left out because their maple tree is not a traced mm's (not lost: out of scope)."""
        return int(sum(self.bpf[b"stats"][ctypes.c_int(1)]))

    def fn_names(self) -> dict[int, str]:
        """Kernel address of each ma_write/ma_op fn string seen -> the string."""
        return {
            int(k.value): bytes(v.s).split(b"\0", 1)[0].decode(errors="replace")
            for k, v in self.bpf[b"fn_names"].items()
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for ring in self._rings.values():
            ring.close()
        self.bpf.cleanup()
