"""Compile the collectors with BCC, attach them, and drain their ring buffers.

BCC compiles in a short-lived child (capture/compile.py), so the long-lived
recorder never holds LLVM; what BCC built (bytecode, maps, BTF) is kept in a
cache keyed by everything the build depends on, so the next recording of
the same plan on the same kernel compiles nothing.  The recorder loads and
attaches it through bpf(2) itself (capture/bpfsys.py).  There is no Python
code per event: each kind has its own ring of fixed-size records, drained
on a timer as numpy arrays (ring.py); decoding to DataFrames is vectorised
too (mmtrace.events.decode).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import math
import os
import platform
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..events.schema import KINDS
from . import bpfsys
from .compile import MANIFEST_FORMAT  # noqa: F401 (cache entries carry it)
from .kernel import COLLECTOR_FILES, KFUNC_PLACEHOLDER, KernelError, ProbePlan, Tracefs, collectors_dir
from .ring import RingReader

__all__ = ["Collector", "BccMissing", "program_source", "ring_sizes", "raise_priority", "RECORDER_NICE",
           "DEFAULT_BUFFER_MB", "cache_dir",
           "load_manifest", "Loaded", "EMPTY_ENV", "EMPTY_GROUPS", "empty_groups"]

# Ring for tree writes, in MiB; at ~1 M events/s (160 bytes each) it holds
# 200 ms, ten times the drain period.
DEFAULT_BUFFER_MB = 32
# Bytes of records drained and not yet taken by the writer past which the
# drain thread leaves records in the kernel's rings unless one is half full
# (see Collector.drain): twice the recorder's early-flush threshold, so a
# flush in progress never stops the draining of a recorder that keeps up.
PENDING_LIMIT = 16 << 20
# Bytes of records decoded and written at a time (one Parquet row group): a
# flush never holds more than this decoded, nor a copy of all it took
# (session.record_pieces).  Whole-batch decoding held the batch twice more
# (concatenated, then decoded), up to ~120 MB live when the drain had fallen
# behind on the mmap loop at full speed.
WRITE_PIECE_BYTES = 4 << 20
# The recorder's threads run at this nice value; the traced command keeps its
# own (it is forked before the recorder's main thread changes its own, and
# Linux keeps a nice value per thread).  With a core to spare this changes
# nothing.  With none (the traced processes keep every core busy) a fair
# share was not enough: two unpaced mmap loops on this 2-core machine
# (1.8 M events/s) made the drain thread wait up to 238 ms and the rings
# overflow in half the recordings (14k-720k events lost); at -10, 1 of 19
# recordings lost events (34k).  The recorder's CPU is proportional to the
# events, so this takes from the traced program only what recording them costs.  A recorder started
# with a nice value of its own (nice -n 5 mmtrace record ...) keeps it.
RECORDER_NICE = -10
_CACHE_ENV = "MMTRACE_CACHE_DIR"
# For benchmarks only: MMTRACE_EMPTY_PROGRAMS=1 (or "all") attaches every hook
# and makes every BPF program return at once, the floor of the hooks alone;
# =GROUP[,GROUP...] empties only those groups' programs, to attribute the
# recorder's cost group by group (benchmarks/overhead.py mmtrace-without-GROUP).
# Every program is in one group: collectors/compat.h MMT_EMPTY_GROUP_<group>
# says which programs each has.
EMPTY_ENV = "MMTRACE_EMPTY_PROGRAMS"
EMPTY_GROUPS = ("tree", "syscall", "compat_syscall", "mmap_lock", "mmap", "proc", "hugetlb")


def raise_priority() -> int:
    """Give the calling thread RECORDER_NICE, unless its nice value is not 0 (the
    user chose one) or the kernel refuses (no CAP_SYS_NICE).  Returns the thread's
    nice value after."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) == 0:
            os.setpriority(os.PRIO_PROCESS, 0, RECORDER_NICE)  # who 0: the calling thread (Linux)
    except OSError:
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


def ring_sizes(buffer_mb: int) -> dict[str, int]:
    """Bytes of ring buffer per kind: tree writes get ``buffer_mb``, rarer kinds less.

    Syscalls get half: on the mmap loop (5 tree writes, 3 syscalls per loop, records
    of about the same size) their ring then fills as fast as the tree writes' ring;
    at a quarter it was the one that overflowed when the writer fell behind (mmloop
    at full speed beside a CPU hog: syscall records lost in 5 of 12 recordings of
    1.12 M loops, none in 7 at half)."""
    mib = 1 << 20
    return {
        "tree_write": buffer_mb * mib,
        "syscall": max(1, buffer_mb // 2) * mib,
        "unmapped_area": max(1, buffer_mb // 8) * mib,
        "proc": max(1, buffer_mb // 16) * mib,
        "exit_mmap": mib // 4,
        "vma_store": mib // 4,
        "fault": max(1, buffer_mb // 8) * mib,
        "hugetlb": max(1, buffer_mb // 8) * mib,
        "mmap_lock": max(1, buffer_mb // 8) * mib,  # about one per traced syscall
    }


def empty_groups(value: str | None) -> tuple[str, ...]:
    """The program groups that ``MMTRACE_EMPTY_PROGRAMS=value`` empties, in
    EMPTY_GROUPS order: none for unset, empty or ``0``, every one for ``1``
    or ``all``, else the comma list's.  ValueError names an unknown group."""
    value = (value or "").strip()
    if value in ("1", "all"):
        return EMPTY_GROUPS
    if value == "0":
        return ()
    asked = {g.strip() for g in value.split(",") if g.strip()}
    unknown = sorted(asked - set(EMPTY_GROUPS))
    if unknown:
        raise ValueError(f"{EMPTY_ENV}={value}: no program group {', '.join(map(repr, unknown))}: "
                         f"give 1 or all, or a comma list of {','.join(EMPTY_GROUPS)}")
    return tuple(g for g in EMPTY_GROUPS if g in asked)


def _empty_cflags(groups: tuple[str, ...]) -> list[str]:
    """The -D flags emptying ``groups`` (collectors/compat.h); every group: MMT_EMPTY_PROGRAMS."""
    if groups == EMPTY_GROUPS:
        return ["-DMMT_EMPTY_PROGRAMS"]
    return [f"-DMMT_EMPTY_GROUP_{g}" for g in groups]


def _pid_max() -> int:
    """The highest pid + 1 (kernel.pid_max); the traced-set bitmap covers these."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 22  # PID_MAX_LIMIT on 64-bit


class BccMissing(KernelError):
    """The bcc Python module (Debian: python3-bpfcc) is not importable."""


_BCC_MISSING = (
    "the BCC Python module is missing: install the distribution package "
    "'python3-bpfcc' (never 'pip install bcc', an unrelated project), "
    "then run ./setup.sh again"
)


def program_source() -> str:
    """The BPF C program: the collector files concatenated (BCC rewrites one file)."""
    d = collectors_dir()
    parts = []
    for name in COLLECTOR_FILES:
        parts.append(f"/* ---- {name} ---- */\n")
        parts.append((d / name).read_text())
    return "".join(parts)


# ---------------------------------------------------------------- the cache
def cache_dir() -> Path:
    """Where compiled modules are kept: $MMTRACE_CACHE_DIR, else ~/.cache/mmtrace/bpf (as kheaders)."""
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmtrace" / "bpf"


def _private(p: Path) -> bool:
    # The cache holds programs that root loads into the kernel: trust only
    # what nobody else could have written.
    try:
        st = p.stat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _bcc_version() -> str:
    spec = importlib.util.find_spec("bcc")  # finds, does not import (nor load libbcc)
    if spec is None or not spec.submodule_search_locations:
        return "none"
    try:
        return (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text().strip()
    except OSError:
        return "unknown"


def _kernel_identity() -> str:
    try:  # the kernel's build id note (ELF notes of vmlinux)
        notes = Path("/sys/kernel/notes").read_bytes().hex()
    except OSError:
        notes = ""
    return f"{platform.release()}|{platform.version()}|{notes}"


def cache_key(source: str, cflags: list[str], plan: ProbePlan) -> str:
    """What a compiled module depends on: mmtrace, BCC, the kernel (build id),
    the headers BCC parses, the tracepoint formats (BCC builds each
    TRACEPOINT_PROBE's args struct from tracefs), the source and flags."""
    h = hashlib.sha256()
    stamp = ""
    if plan.headers:
        try:
            stamp = (Path(plan.headers) / ".mmtrace-complete").read_text()
        except OSError:
            stamp = plan.headers
    for part in (__version__, str(MANIFEST_FORMAT), _bcc_version(), _kernel_identity(), str(plan.headers), stamp,
                 json.dumps(plan.tracepoints, sort_keys=True), source, "\0".join(cflags)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _cache_read(key: str) -> dict | None:
    d = cache_dir()
    f = d / f"{key}.json"
    if not (_private(d) and _private(f)):
        return None
    try:
        m = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return m if m.get("format") == MANIFEST_FORMAT and m.get("key") == key else None


def _cache_write(key: str, manifest: dict) -> None:
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(d):
            return
        tmp = d / f".{key}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**manifest, "key": key}, f)
        os.replace(tmp, d / f"{key}.json")
    except OSError:
        pass  # no cache: the next recording compiles again


def _compile(source: str, cflags: list[str], headers: str | None) -> dict:
    """Run BCC in a child process (capture/compile.py): the module it built."""
    pkg_parent = str(Path(__file__).resolve().parent.parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    req = json.dumps({"source": source, "cflags": cflags, "headers": headers})
    r = subprocess.run([sys.executable, "-m", "mmtrace.capture.compile"], input=req, stdout=subprocess.PIPE,
                       text=True, env=env)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"the BCC compiler process failed (exit {r.returncode}, no result)") from None
    if "error" in out:
        if out.get("bcc_missing"):
            raise BccMissing(_BCC_MISSING)
        raise RuntimeError(out["error"])
    return out


# ---------------------------------------------------------------- loading
def _kfuncs(plan: ProbePlan) -> dict[int, int]:
    """{placeholder helper id: kfunc BTF id} of the kfuncs the plan's collectors call."""
    cast = plan.features.get("rdonly_cast")
    return {KFUNC_PLACEHOLDER["rdonly_cast"]: cast["func"]} if cast else {}


class Loaded:
    """A module replayed into the kernel: ``maps`` {name: (fd, manifest entry)},
    ``progs`` {name: fd}, ``links`` (perf-event and raw-tracepoint fds that keep
    the programs attached)."""

    def __init__(self) -> None:
        self.maps: dict[str, tuple[int, dict]] = {}
        self.progs: dict[str, int] = {}
        self.links: list[tuple[str, int]] = []  # (kind, fd)
        self.btf_fd: int | None = None

    def fds(self) -> list[int]:
        return ([fd for _, fd in self.links] + list(self.progs.values()) + [fd for fd, _ in self.maps.values()]
                + ([self.btf_fd] if self.btf_fd is not None else []))

    def close(self, background: bool = False) -> None:
        """Detach and free everything.

        Closing a tracepoint's perf event waits for an RCU grace period under
        the global event_mutex (perf_trace_destroy() -> perf_trace_event_unreg()
        -> tracepoint_synchronize_unregister(), kernel/trace/trace_event_perf.c):
        ~30 ms each, one after the other, ~1 s for mmtrace's 30.  With
        ``background``, a detached grandchild holds the last copies of the fds
        and closes them, so the caller does not wait; the programs stay
        attached (running their filter) until it is done."""
        fds = self.fds()
        self.links, self.progs, self.maps, self.btf_fd = [], {}, {}, None
        done_w = None
        if background and fds:
            done_r, done_w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                pid = -1
            if pid == 0:  # child: fork the closer, exit at once (nothing to reap later)
                try:
                    if os.fork() == 0:
                        os.setsid()
                        # Nor hold the caller's stdout/stderr (a pipe's reader would wait).
                        null = os.open(os.devnull, os.O_RDWR)
                        for std in (0, 1, 2):
                            os.dup2(null, std)
                        # Close last: wait until the caller has closed its copies.
                        os.close(done_w)
                        os.read(done_r, 1)
                        for fd in fds:
                            os.close(fd)
                finally:
                    os._exit(0)
            os.close(done_r)
            if pid > 0:
                os.waitpid(pid, 0)
        for fd in fds:
            os.close(fd)
        if done_w is not None:
            os.close(done_w)


def load_manifest(m: dict, tracefs: str, *, before_attach=None, tp_btf: dict[str, int] | None = None,
                  kfuncs: dict[int, int] | None = None) -> Loaded:
    """Create the maps of ``m`` (capture/compile.py), load its programs with
    their map references patched to the new fds, and attach them.
    ``before_attach(loaded)`` runs once the maps exist and nothing is attached
    (to fill the traced set first).  ``tp_btf`` {raw tracepoint: btf_trace_
    typedef id} (the plan's feature): those raw tracepoint programs load as
    BTF-typed ones (the collectors were compiled for it, -DMMT_TP_BTF).
    ``kfuncs`` {placeholder helper id: kfunc BTF id}: calls to patch."""
    tp_btf = tp_btf or {}
    out = Loaded()
    try:
        btf_fd = 0
        if m.get("btf"):
            out.btf_fd = btf_fd = bpfsys.btf_load(base64.b64decode(m["btf"]))
        fds = []
        for mp in m["maps"]:
            has_btf = btf_fd and mp["btf_value_type_id"]
            fd = bpfsys.map_create(mp["type"], mp["key_size"], mp["value_size"], mp["max_entries"], mp["flags"],
                                   mp["name"], btf_fd if has_btf else 0, mp["btf_key_type_id"] if has_btf else 0,
                                   mp["btf_value_type_id"] if has_btf else 0)
            out.maps[mp["name"]] = (fd, mp)
            fds.append(fd)
        for p in m["progs"]:
            code = bytearray(base64.b64decode(p["insns"]))
            for insn, map_index in p["relocs"]:
                code[8 * insn + 4 : 8 * insn + 8] = fds[map_index].to_bytes(4, "little", signed=True)
            if kfuncs:
                bpfsys.patch_kfunc_calls(code, kfuncs)
            ptype = bpfsys.PROG_TYPE_RAW_TRACEPOINT if p["kind"] == "raw_tracepoint" else bpfsys.PROG_TYPE_TRACEPOINT
            btf_id = tp_btf.get(p["target"], 0) if p["kind"] == "raw_tracepoint" else 0
            if btf_id:
                out.progs[p["name"]] = bpfsys.prog_load(bpfsys.PROG_TYPE_TRACING, bytes(code), p["name"], m["license"],
                                                        m["kern_version"], bpfsys.ATTACH_TRACE_RAW_TP, btf_id)
            else:
                out.progs[p["name"]] = bpfsys.prog_load(ptype, bytes(code), p["name"], m["license"], m["kern_version"])
        if before_attach is not None:
            before_attach(out)
        for p in m["progs"]:
            fd = out.progs[p["name"]]
            if p["kind"] == "raw_tracepoint":
                out.links.append(("raw_tracepoint", bpfsys.raw_tracepoint_open(p["target"], fd,
                                                                               tp_btf=p["target"] in tp_btf)))
            else:
                cat, name = p["target"].split(":")
                out.links.append(("tracepoint", bpfsys.tracepoint_attach(fd, tracefs, cat, name)))
    except BaseException:
        out.close()
        raise
    return out


class _Map:
    """Typed access to one map of a Loaded module (keys and values as bytes)."""

    def __init__(self, fd: int, info: dict, ncpus: int) -> None:
        self.fd = fd
        self.key_size = info["key_size"]
        self.max_entries = info["max_entries"]
        self.percpu = info["type"] in (5, 6, 10)  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
        vs = info["value_size"]
        self.value_size = ((vs + 7) & ~7) * ncpus if self.percpu else vs
        self.elem_size = (vs + 7) & ~7

    def get(self, key: bytes) -> bytes | None:
        return bpfsys.map_lookup(self.fd, key, self.value_size)

    def set(self, key: bytes, value: bytes) -> None:
        bpfsys.map_update(self.fd, key, value)

    def keys(self) -> list[bytes]:
        out, k = [], None
        while True:
            k = bpfsys.map_next_key(self.fd, k, self.key_size)
            if k is None:
                return out
            out.append(k)

    def percpu_u64_sum(self, key: bytes) -> int:
        v = self.get(key)
        return int(np.frombuffer(v, dtype="<u8")[:: self.elem_size // 8].sum()) if v else 0


def _u32(x: int) -> bytes:
    return int(x).to_bytes(4, "little")


class Collector:
    """The loaded BPF program.

    ``poll()`` waits, then moves records out of the rings (freeing their
    space); ``take()`` hands them over as numpy record arrays by kind.
    ``compiled`` says whether this load compiled (False: from the cache).
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
        stacks: bool = False,
    ) -> None:
        if buffer_mb < 1 or buffer_mb & (buffer_mb - 1):
            raise ValueError("--buffer-mb must be a power of two (ring buffers need it)")
        self.plan = plan
        self.ring_bytes = ring_sizes(buffer_mb)
        self.system_wide = system_wide
        page = os.sysconf("SC_PAGE_SIZE")
        cflags = plan.cflags() + [
            f"-I{collectors_dir()}",
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
        # record -g: user stacks at syscall entry, fork, exec, exit (stacks.bpf.c)
        if stacks:
            from .stacks import stack_cflags

            if not plan.features.get("pt_regs_sp"):
                raise KernelError("record -g: this kernel's BTF has no pt_regs.sp (the user stack pointer)")
            cflags += stack_cflags()
        # For benchmarks only (overhead.py's mmtrace-empty-programs and
        # mmtrace-without-GROUP): attach everything, and record nothing, or
        # nothing of some groups, to measure what the hooks and each group cost.
        self.empty_programs = empty_groups(os.environ.get(EMPTY_ENV))
        cflags += _empty_cflags(self.empty_programs)
        if self.empty_programs == EMPTY_GROUPS:
            print(f"mmtrace: warning: {EMPTY_ENV}={os.environ[EMPTY_ENV]}: every BPF program returns at once; "
                  "nothing is recorded (this measures the hooks alone)", file=sys.stderr)
        elif self.empty_programs:
            print(f"mmtrace: warning: {EMPTY_ENV}={os.environ[EMPTY_ENV]}: the BPF programs of "
                  f"{', '.join(self.empty_programs)} return at once; their events are not recorded "
                  "(this measures what they cost)", file=sys.stderr)
        source = program_source()
        ncpus = bpfsys.possible_cpus()
        # The recorder itself (system-wide: its tgid is the one bit of the
        # bitmap, which then means "not traced").
        self_tgid = os.getpid() if self_tgid is None else self_tgid

        def fill_traced(loaded: Loaded) -> None:
            # The traced set must be in place before anything can fork.
            self._maps = {name: _Map(fd, info, ncpus) for name, (fd, info) in loaded.maps.items()}
            self._traced = self._maps["traced"]
            self._traced_bits = self._maps["traced_bits"]
            if system_wide:
                self._set_bits([self_tgid])
            for pid in pids or ():
                self.add_pid(pid)

        while True:
            self.cflags = cflags
            key = cache_key(source, cflags, plan)
            manifest = _cache_read(key)
            self.compiled = manifest is None
            if manifest is None:
                manifest = _compile(source, cflags, plan.headers)
                _cache_write(key, manifest)
            direct = bool(plan.features.get("tp_btf") or plan.features.get("rdonly_cast"))
            try:
                self._loaded = load_manifest(manifest, str(Tracefs().root), before_attach=fill_traced,
                                             tp_btf=plan.features.get("tp_btf") or None, kfuncs=_kfuncs(plan))
                break
            except bpfsys.BpfError as e:
                if not direct:
                    raise RuntimeError(str(e)) from e
                # A kernel whose verifier refuses the direct reads of a
                # program the probes did not cover (capture/kernel.py
                # _tp_btf, _rdonly_cast): build it again with probe reads
                # only, and say so in the plan the trace keeps.
                plan.features["tp_btf"] = {}
                plan.features["rdonly_cast"] = {}
                plan.features["direct_reads_refused"] = str(e).splitlines()[0][:200]
                cflags = [f for f in cflags if f != "-DMMT_TP_BTF" and not f.startswith(("-DMMT_KF_", "-DMMT_BTF_"))]
        self.programs = dict(self._loaded.progs)  # function name -> prog fd
        try:
            self._rings = {
                k: RingReader(self._loaded.maps[f"rb_{k}"][0], n, KINDS[k].dtype)
                for k, n in self.ring_bytes.items()
            }
        except BaseException:
            self._loaded.close()
            raise
        self._pending: dict[str, list[np.ndarray]] = {k: [] for k in self._rings}
        self.pending_limit: int | None = PENDING_LIMIT  # None: no limit (see drain)
        self.stack_table = self.files = None
        if stacks:
            from .stacks import FileNotes, StackTable

            self.stack_table, self.files = StackTable(self._maps["stacks"], self._maps["stacks2"]), FileNotes()
        # Drain on our own thread, every few ms, so that writing Parquet on
        # the caller's thread never leaves the rings to fill up.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain_loop, name="mmtrace-drain", daemon=True)
        self._thread.start()

    def add_pid(self, tgid: int) -> None:
        """Add a process (and, through fork, its future children) to the traced set."""
        if self.system_wide:
            return  # everything is traced; the bitmap lists what is not
        self._traced.set(_u32(tgid), b"\x01")
        # Every tgid of the hash, this one included: our read-modify-write of
        # a bitmap word can undo a bit the kernel set at that instant for a
        # traced process's new child; the kernel adds children to the hash
        # first, so the hash puts any such bit back.
        self._set_bits([int.from_bytes(k, "little") for k in self._traced.keys()])

    def _set_bits(self, tgids: list[int]) -> None:
        size = self._traced_bits.max_entries
        for tgid in tgids:
            word, bit = divmod(tgid, 64)
            if word >= size:
                continue  # the kernel side falls back to the hash
            key = _u32(word)
            old = int.from_bytes(self._traced_bits.get(key) or bytes(8), "little")
            if not old >> bit & 1:
                self._traced_bits.set(key, (old | 1 << bit).to_bytes(8, "little"))

    def poll(self, timeout_ms: int = 100) -> None:
        """Wait ``timeout_ms`` (records are submitted without wakeups; a thread
        drains meanwhile), then drain once more."""
        if timeout_ms > 0:
            time.sleep(timeout_ms / 1000)
        self.drain()

    def drain(self) -> None:
        """Copy what was submitted so far out of the rings, freeing their space.

        While the records drained and not yet taken stay under
        ``pending_limit`` bytes, everything is taken; past it, records wait
        in the kernel's rings, whose pages are not in the recorder's RSS
        (:class:`RingReader` maps them only while copying), so a writer that
        falls behind for a moment costs no memory.  A ring more than half
        full is emptied whatever the budget: the bound moves the waiting
        into the rings, it never makes a ring overflow and lose records."""
        with self._lock:
            budget = math.inf if self.pending_limit is None else self.pending_limit - self.pending_bytes()
            backlog = {k: ring.backlog() for k, ring in self._rings.items()}
            total = sum(backlog.values())
            for k, ring in self._rings.items():
                if not backlog[k]:
                    continue
                if backlog[k] > ring.size // 2 or total <= budget:
                    share = backlog[k]
                elif budget > 0:
                    # Short of room, each ring gets its share of the budget, so
                    # no kind waits (and fills its ring) behind another.
                    share = budget * backlog[k] // total
                else:
                    continue
                arr = ring.read(max(1, share // ring.rec.itemsize))
                if len(arr):
                    self._pending[k].append(arr)
                    if self.files is not None and k == "tree_write":
                        self.files.note_tree_writes(arr)  # record -g: while the files are still mapped

    def _drain_loop(self, period: float = 0.005) -> None:
        raise_priority()  # this thread only: the traced command is forked from the main thread
        while not self._stop.wait(period):
            self.drain()

    def take(self) -> dict[str, list[np.ndarray]]:
        """Hand over the records drained so far: by kind, the arrays as drained
        (in order), not joined, for a writer that goes through them piece by piece."""
        with self._lock:
            pending = self._pending
            self._pending = {k: [] for k in self._rings}
        return {k: p for k, p in pending.items() if p}

    def backlog(self) -> int:
        """Bytes still in the kernel's rings, not yet drained."""
        return sum(r.backlog() for r in self._rings.values())

    def pending_count(self) -> int:
        return sum(len(a) for parts in self._pending.values() for a in parts)

    def pending_bytes(self) -> int:
        """Bytes of records drained and not yet taken: what the recorder bounds."""
        return sum(a.nbytes for parts in self._pending.values() for a in parts)

    def lost(self) -> dict[str, int]:
        """Records dropped because the ring buffer was full, by kind (summed over CPUs)."""
        table = self._maps["lost"]
        return {kind.name: table.percpu_u64_sum(_u32(kind.id)) for kind in KINDS.values()}

    def folded(self) -> int:
        """Inner mas_wr_* stores folded into the identical outer store (not lost: redundant)."""
        return self._maps["stats"].percpu_u64_sum(_u32(0))

    def other_trees(self) -> int:
        """Writes left out because their maple tree is not a traced mm's (not lost: out of scope)."""
        return self._maps["stats"].percpu_u64_sum(_u32(1))

    def fn_names(self) -> dict[int, str]:
        """Kernel address of each ma_write/ma_op fn string seen -> the string."""
        table = self._maps["fn_names"]
        out = {}
        for k in table.keys():
            v = table.get(k)
            if v is not None:  # struct mmt_fn_name: char s[48] first
                out[int.from_bytes(k, "little")] = v[:48].split(b"\0", 1)[0].decode(errors="replace")
        return out

    def stop_draining(self) -> None:
        """Stop the drain thread: from now on only :meth:`drain` called by the
        owner (``Session.tables`` does) moves records out of the rings."""
        self._stop.set()
        self._thread.join()

    def close(self, wait: bool = False) -> None:
        """Stop draining and detach.  Detaching ends in the background unless
        ``wait`` (see :meth:`Loaded.close`); the traced set is emptied first."""
        self.stop_draining()
        for ring in self._rings.values():
            ring.close()
        if not wait:
            # The lingering programs then leave at their first test (but
            # system-wide, where every tgid but ours is traced).
            try:
                for k in self._traced.keys():
                    bpfsys.map_delete(self._traced.fd, k)
                    self._traced_bits.set(_u32(int.from_bytes(k, "little") // 64), bytes(8))
            except OSError:
                pass
        self._loaded.close(background=not wait)
