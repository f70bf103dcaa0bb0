"""Compile the collectors with BCC, attach them, and drain the ring buffer.

The only module (with recorder.py) that imports bcc.  The ring-buffer
callback does the least possible per event: copy the bytes and file them by
kind (the first byte).  Decoding is one ``numpy.frombuffer`` per kind per
batch (mmtrace.events.decode).
"""

from __future__ import annotations

import ctypes
import os
from collections import defaultdict

import numpy as np

from ..events.schema import KIND_BY_ID, KINDS
from .kernel import COLLECTOR_FILES, KernelError, ProbePlan, collectors_dir

__all__ = ["Collector", "BccMissing", "program_source"]


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

    ``poll()`` moves records from the ring buffer into per-kind byte lists;
    ``take()`` hands them over as numpy record arrays.
    """

    def __init__(
        self,
        plan: ProbePlan,
        *,
        pids: list[int] | None = None,
        system_wide: bool = False,
        buffer_mb: int = 16,
        self_tgid: int | None = None,
    ) -> None:
        bcc = _import_bcc()
        if buffer_mb < 1 or buffer_mb & (buffer_mb - 1):
            raise ValueError("--buffer-mb must be a power of two (the ring buffer needs it)")
        self.plan = plan
        pages = buffer_mb * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
        cflags = plan.cflags() + [
            f"-I{collectors_dir()}",
            f"-DMMT_RINGBUF_PAGES={pages}",
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
        if system_wide:
            cflags.append("-DMMT_TRACE_ALL")
        self.cflags = cflags
        if plan.headers:
            os.environ["BCC_KERNEL_SOURCE"] = plan.headers
        self.bpf = bcc.BPF(text=program_source().encode(), cflags=cflags)
        # The traced set must be in place before anything can fork.
        self._traced = self.bpf[b"traced"]
        for pid in pids or ():
            self.add_pid(pid)
        self._chunks: dict[int, list[bytes]] = defaultdict(list)
        self._count = 0
        string_at = ctypes.string_at
        chunks = self._chunks

        def on_event(ctx, data, size):
            raw = string_at(data, size)
            chunks[raw[0]].append(raw)

        self._cb = on_event
        self.bpf[b"events"].open_ring_buffer(on_event)

    def add_pid(self, tgid: int) -> None:
        """Add a process (and, through fork, its future children) to the traced set."""
        self._traced[ctypes.c_uint32(tgid)] = ctypes.c_uint8(1)

    def poll(self, timeout_ms: int = 100) -> None:
        self.bpf.ring_buffer_poll(timeout_ms)

    def drain(self) -> None:
        """Consume everything in the ring buffer without waiting."""
        self.bpf.ring_buffer_consume()

    def take(self) -> dict[str, np.ndarray]:
        """Hand over the records polled so far, decoded to numpy arrays by kind."""
        out = {}
        for kid, parts in list(self._chunks.items()):
            if not parts:
                continue
            self._chunks[kid] = []
            kind = KIND_BY_ID.get(kid)
            if kind is None:
                raise KernelError(f"ring buffer record of unknown kind {kid}: collectors and schema disagree")
            blob = b"".join(parts)
            if len(blob) != len(parts) * kind.size:
                raise KernelError(
                    f"{kind.name}: record size differs from the schema ({kind.size} bytes): "
                    "collectors/events.h and mmtrace/events/schema.py disagree"
                )
            out[kind.name] = np.frombuffer(blob, dtype=kind.dtype)
        return out

    def pending_count(self) -> int:
        return sum(len(p) for p in self._chunks.values())

    def lost(self) -> dict[str, int]:
        """Records dropped because the ring buffer was full, by kind (summed over CPUs)."""
        table = self.bpf[b"lost"]
        out = {}
        for kind in KINDS.values():
            vals = table[ctypes.c_int(kind.id)]
            out[kind.name] = int(sum(vals))
        return out

    def fn_names(self) -> dict[int, str]:
        """Kernel address of each ma_write/ma_op fn string seen -> the string."""
        return {
            int(k.value): bytes(v.s).split(b"\0", 1)[0].decode(errors="replace")
            for k, v in self.bpf[b"fn_names"].items()
        }

    def close(self) -> None:
        self.bpf.cleanup()
