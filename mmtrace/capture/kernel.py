"""What this kernel offers, found at run time: the probe plan.

All kernel knowledge of the capture side lives here and in
``collectors/compat.h``: tracepoint names, the syscalls we follow, the struct
members we read (offsets from BTF, never from headers), and the kernel header
fallback BCC needs.  Features are detected, never inferred from a version.
"""

from __future__ import annotations

import glob
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..events.flags import VM_HUGETLB

__all__ = [
    "KernelError",
    "ProbePlan",
    "Tracefs",
    "REQUIRED_TRACEPOINTS",
    "OPTIONAL_TRACEPOINTS",
    "SYSCALLS",
    "SYSCALL_NR",
    "SYSCALL_NR_32",
    "BTF_MEMBERS",
    "make_plan",
    "find_headers",
    "COLLECTOR_FILES",
    "collectors_dir",
]


class KernelError(RuntimeError):
    """Recording cannot work on this kernel; the message says why and what to do."""


# Tracepoints the model cannot do without.
REQUIRED_TRACEPOINTS = (
    "maple_tree:ma_write",
    "sched:sched_process_fork",
    "sched:sched_process_exec",
    "sched:sched_process_exit",
)
# Syscall tracepoints followed for hugetlb only (collectors/huge.bpf.c): compiled in as MMT_HAVE_<name>.
_WAIT_TRACEPOINTS = ("syscalls:sys_enter_wait4", "syscalls:sys_enter_waitid")
# Used when present; the trace records which ones were.
OPTIONAL_TRACEPOINTS = (
    "maple_tree:ma_op",
    "mmap:exit_mmap",
    "mmap:vm_unmapped_area",
    "mmap:vma_store",  # v6.1-v6.2 only
    "mmap:vma_mas_szero",  # v6.1-v6.2 only
    "exceptions:page_fault_user",  # faults in hugetlb ranges
    "signal:signal_generate",  # a hugetlb fault that found no page (SIGBUS)
    # a parent's wait for its children: its hugetlb faults have returned (collectors/huge.bpf.c)
    *_WAIT_TRACEPOINTS,
    # when a syscall's silent tree changes become visible (collectors/mmap_lock.bpf.c)
    "mmap_lock:mmap_lock_acquire_returned",
    "mmap_lock:mmap_lock_released",
)
# Syscalls that change an address space, in mmtrace's id order (ids are stable
# within a trace only; the trace stores this table).
SYSCALLS = (
    "mmap",
    "munmap",
    "mprotect",
    "pkey_mprotect",
    "mremap",
    "brk",
    "madvise",
    "shmat",
    "shmdt",
    "execve",
    "execveat",
    "mseal",
    "remap_file_pages",
    "fallocate",  # hugetlbfs_fallocate(): allocates / punches a hugetlb file's pages (detect/hugetlb.py)
)
# Their numbers in the x86_64 syscall table (arch/x86/entry/syscalls/
# syscall_64.tbl), for the raw_syscalls hook, which sees only the number.
# Numbers are ABI: they never change once assigned.
SYSCALL_NR = {
    "x86_64": {
        "mmap": 9,
        "mprotect": 10,
        "munmap": 11,
        "brk": 12,
        "mremap": 25,
        "madvise": 28,
        "shmat": 30,
        "execve": 59,
        "shmdt": 67,
        "remap_file_pages": 216,
        "execveat": 322,
        "pkey_mprotect": 329,
        "mseal": 462,
        "fallocate": 285,
    },
}
# The same syscalls' numbers in the i386 table (arch/x86/entry/syscalls/
# syscall_32.tbl), for ia32 (compat) processes on x86_64 (collectors/
# syscalls.bpf.c MMT_COMPAT_SYSCALLS).  "mmap" is mmap2 (sys_mmap_pgoff,
# offset in pages), "old_mmap" the old mmap (compat_sys_ia32_mmap, one pointer
# to the six arguments); fallocate is sys_ia32_fallocate (64-bit offset and
# len in two halves each).  Not followed: ipc(2)'s SHMAT/SHMDT multiplexer
# (117), whose attach address is written to user memory; its tree changes are
# stores (the model sees them; changes() has no syscall for them).
SYSCALL_NR_32 = {
    "x86_64": {
        "execve": 11,
        "brk": 45,
        "old_mmap": 90,
        "munmap": 91,
        "mprotect": 125,
        "mremap": 163,
        "mmap": 192,
        "madvise": 219,
        "remap_file_pages": 257,
        "fallocate": 324,
        "execveat": 358,
        "pkey_mprotect": 380,
        "shmat": 397,
        "shmdt": 398,
        "mseal": 462,
    },
}
# Following compat syscalls runs two raw-tracepoint programs at every syscall
# of the host (they return at the TS_COMPAT test for native tasks): getppid
# 0.20 -> 0.40-0.47 us while recording, for every process of the host.  So the
# recorder follows them only where a target needs it (capture/session.py
# compat_reason: a 32-bit program among the targets, the whole system, or
# record --compat); MMTRACE_COMPAT_SYSCALLS=1 always, =0 never.  Processes not
# followed are reported not modelled (mmtrace/model/coverage.py).
COMPAT_ENV = "MMTRACE_COMPAT_SYSCALLS"
# The smallest kernel stack (THREAD_SIZE) of the architecture: 16 KiB on
# x86_64 (THREAD_SIZE_ORDER 2; KASAN doubles it, never less).  A maple tree
# less than this far above task->stack lies on that stack, so it is not an
# mm's (munmap's detach tree): -DMMT_THREAD_SIZE.
MIN_THREAD_SIZE = {"x86_64": 16384}
# x86's thread_info.status bit for a 32-bit syscall in progress (TS_COMPAT,
# arch/x86/include/asm/thread_info.h): such a call's number is from the
# i386 table, so the raw hook leaves it out, as syscalls:* tracepoints do.
TS_COMPAT = 0x0002
# How syscalls are hooked.  "tracepoints" (the default): syscalls:sys_enter_*
# / sys_exit_* of the syscalls we follow.  "raw": raw_syscalls:sys_enter/
# sys_exit as raw tracepoints, kept by number in BPF, arguments read from
# pt_regs.  Both put every syscall of the host on the tracing slow path, but
# the raw hook also runs a BPF program at every syscall of every process.
# Measured here (benchmarks/overhead.py, and a getppid() loop): the mmap loop
# traced costs the same with either (11.4 us, 7.5 untraced), while an
# untraced process's getppid() goes from 140 ns to 185 with the per-syscall
# tracepoints and to 285 with the raw hook.  So the raw hook is opt-in:
# MMTRACE_SYSCALL_HOOK=raw.
_HOOK_ENV = "MMTRACE_SYSCALL_HOOK"
# (struct, member) pairs the collectors read; -D MMT_OFF_<struct>__<member>.
BTF_MEMBERS = (
    ("task_struct", "mm"),
    ("task_struct", "tgid"),
    ("task_struct", "pid"),
    ("task_struct", "comm"),
    ("task_struct", "stack"),
    ("mm_struct", "mm_mt"),
    ("mm_struct", "mm_users"),
    ("mm_struct", "brk"),
    ("mm_struct", "start_brk"),
    ("vm_area_struct", "vm_start"),
    ("vm_area_struct", "vm_end"),
    ("vm_area_struct", "vm_flags"),
    ("vm_area_struct", "vm_pgoff"),
    ("vm_area_struct", "vm_file"),
    ("vm_area_struct", "vm_mm"),
    ("ma_state", "tree"),
    ("ma_state", "index"),
    ("ma_state", "last"),
    ("ma_state", "node"),
    ("ma_state", "min"),
    ("ma_state", "max"),
    ("file", "f_inode"),
    ("inode", "i_ino"),
    ("inode", "i_sb"),
    ("super_block", "s_dev"),
)
# The raw syscall hook's: the syscall arguments in pt_regs (x86_64 calling
# convention of syscalls: di, si, dx, r10, r8, r9) and TS_COMPAT.
BTF_MEMBERS_RAW_SYSCALLS = (
    ("pt_regs", "di"),
    ("pt_regs", "si"),
    ("pt_regs", "dx"),
    ("pt_regs", "r10"),
    ("pt_regs", "r8"),
    ("pt_regs", "r9"),
    ("task_struct", "thread_info"),
    ("thread_info", "status"),
)
# Compat syscalls: the i386 syscall convention's argument registers (bx, cx,
# dx, si, di, bp) and TS_COMPAT's word.
BTF_MEMBERS_COMPAT_SYSCALLS = (
    ("pt_regs", "bx"),
    ("pt_regs", "cx"),
    ("pt_regs", "dx"),
    ("pt_regs", "si"),
    ("pt_regs", "di"),
    ("pt_regs", "bp"),
    ("task_struct", "thread_info"),
    ("thread_info", "status"),
)
# mmap:vm_unmapped_area as a raw tracepoint (TP_PROTO(addr, info)), where BTF
# has what its record is made of: -DMMT_RAW_vm_unmapped_area.
BTF_MEMBERS_UNMAPPED_AREA = (
    ("vm_unmapped_area_info", "flags"),
    ("vm_unmapped_area_info", "length"),
    ("vm_unmapped_area_info", "low_limit"),
    ("vm_unmapped_area_info", "high_limit"),
    ("vm_unmapped_area_info", "align_mask"),
    ("vm_unmapped_area_info", "align_offset"),
    ("mm_struct", "total_vm"),
)
# Structs whose members are read with a single probe read of a window.
WINDOWED = ("vm_area_struct", "ma_state", "pt_regs", "vm_unmapped_area_info")
# Read only where this kernel has hugetlbfs (CONFIG_HUGETLBFS): -DMMT_HAVE_HUGETLB.
BTF_MEMBERS_HUGETLB = (
    ("super_block", "s_fs_info"),
    ("hugetlbfs_sb_info", "hstate"),
    ("hstate", "nr_huge_pages"),
    ("hstate", "free_huge_pages"),
    ("hstate", "resv_huge_pages"),
    ("hstate", "surplus_huge_pages"),
    ("hstate", "order"),
)
# The sampling task's hugetlb cgroup reservation counter (cgroup v2
# hugetlb.<size>.rsvd.current, "hugetlb_cgroup: add reservation accounting
# for private mappings", v5.7): task->cgroups->subsys[hugetlb_cgrp_id] is the
# css inside struct hugetlb_cgroup, whose rsvd_hugepage[hstate_index] is a
# page_counter.  -DMMT_HAVE_HUGETLB_CGROUP where BTF has all of it.
BTF_MEMBERS_HUGETLB_CGROUP = (
    ("task_struct", "cgroups"),
    ("css_set", "subsys"),
    ("hugetlb_cgroup", "css"),
    ("hugetlb_cgroup", "rsvd_hugepage"),
    ("page_counter", "usage"),
)
HUGEPAGES_SYSFS = "/sys/kernel/mm/hugepages"


def hstate_orders(sysfs: str = HUGEPAGES_SYSFS, page_size: int = 4096) -> list[int]:
    """The order of each hstate, by ``hstate_index()`` (position in hstates[]).

    hstates[] fills in ``hugetlb_add_hstate()`` call order, and
    ``hugetlb_sysfs_init()`` creates one directory per hstate in that order;
    kernfs numbers its nodes increasingly, so sorting the directories by inode
    number gives the index (on x86 the 1 GiB hstate comes first when the CPU
    has gbpages: ``gigantic_pages_init()`` is an arch_initcall).
    """
    try:
        ents = [(os.stat(os.path.join(sysfs, n)).st_ino, n) for n in os.listdir(sysfs) if n.startswith("hugepages-")]
    except OSError:
        return []
    out = []
    for _ino, name in sorted(ents):
        kb = int(name[len("hugepages-"):-len("kB")])
        out.append((kb * 1024 // page_size).bit_length() - 1)
    return out


COLLECTOR_FILES = (
    "common.bpf.c",
    "vma.bpf.c",
    "huge.bpf.c",
    "stacks.bpf.c",
    "proc.bpf.c",
    "syscalls.bpf.c",
    "mmap_lock.bpf.c",  # reads syscalls.bpf.c's per-task pending call
    "mmap.bpf.c",
)

# For tests and for reproducing a user's kernel: hide tracepoints from
# discovery, e.g. MMTRACE_HIDE_TRACEPOINTS=maple_tree:ma_write,mmap:exit_mmap
_HIDE_ENV = "MMTRACE_HIDE_TRACEPOINTS"


def collectors_dir() -> Path:
    """Where the BPF C sources are: installed as package data, or the repo."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here / "collectors", here.parent / "collectors"):
        if (cand / "events.h").exists():
            return cand
    raise KernelError("mmtrace's BPF sources (collectors/) are missing from the installation")


class Tracefs:
    """The tracefs mount: which tracepoints exist, and their fields."""

    CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

    def __init__(self, root: str | None = None) -> None:
        self.root = Path(root) if root else self._find()
        hidden = os.environ.get(_HIDE_ENV, "")
        self.hidden = {h.strip() for h in hidden.split(",") if h.strip()}

    @classmethod
    def _find(cls) -> Path:
        for c in cls.CANDIDATES:
            if os.path.isdir(os.path.join(c, "events")):
                return Path(c)
        return Path(cls.CANDIDATES[0])

    @property
    def mounted(self) -> bool:
        return (self.root / "events").is_dir()

    def mount(self) -> None:
        """Mount tracefs at /sys/kernel/tracing if nothing is mounted (root only)."""
        if self.mounted:
            return
        import subprocess

        r = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", self.CANDIDATES[0]],
            capture_output=True,
            text=True,
        )
        self.root = Path(self.CANDIDATES[0])
        if r.returncode != 0 or not self.mounted:
            raise KernelError(
                f"tracefs is not mounted and mounting it failed: {r.stderr.strip()} "
                "(try: mount -t tracefs nodev /sys/kernel/tracing)"
            )

    def exists(self, tp: str) -> bool:
        if tp in self.hidden:
            return False
        cat, name = tp.split(":")
        return (self.root / "events" / cat / name / "format").exists()

    def fields(self, tp: str) -> list[dict]:
        """The tracepoint's own fields (common_* left out) from its format file."""
        cat, name = tp.split(":")
        text = (self.root / "events" / cat / name / "format").read_text()
        out = []
        for m in re.finditer(
            r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d+);",
            text,
        ):
            decl = m["decl"].strip()
            fname = re.split(r"[\s*]+", decl.split("[")[0].strip())[-1]
            if fname.startswith("common_"):
                continue
            out.append(
                {
                    "name": fname,
                    "decl": decl,
                    "offset": int(m["off"]),
                    "size": int(m["size"]),
                    "signed": m["signed"] == "1",
                }
            )
        return out


@dataclass
class ProbePlan:
    """Everything the loader needs, and everything a trace records about it."""

    kernel_release: str
    tracepoints: dict[str, list[dict]]  # used tracepoint -> its fields
    missing: list[str]  # optional tracepoints this kernel lacks
    syscalls: dict[str, int]  # syscall name -> mmtrace id
    syscall_nargs: dict[str, int]
    offsets: dict[str, int]  # "struct.member" -> byte offset
    features: dict[str, bool | int] = field(default_factory=dict)  # see compat.h
    headers: str | None = None
    syscall_hook: str = "tracepoints"  # or "raw", see _HOOK_ENV
    syscall_nr: dict[str, int] = field(default_factory=dict)  # raw hook: name -> number
    # compat syscalls followed: name -> i386 number (SYSCALL_NR_32); {} when not
    syscall_nr32: dict[str, int] = field(default_factory=dict)

    def cflags(self) -> list[str]:
        """-D flags for the collectors (see compat.h)."""
        flags = []
        for key, off in self.offsets.items():
            s, m = key.split(".")
            flags.append(f"-DMMT_OFF_{s}__{m}={off}")
        for struct, (lo, length) in self.windows().items():
            flags += [f"-DMMT_WIN_{struct}_LO={lo}", f"-DMMT_WIN_{struct}_LEN={length}"]
        for tp in self.tracepoints:
            cat, name = tp.split(":")
            if (cat in ("maple_tree", "mmap", "exceptions", "signal", "mmap_lock") and name != "ma_write"
                    or tp in _WAIT_TRACEPOINTS):
                flags.append(f"-DMMT_HAVE_{name}")
        if self.features.get("hugetlb"):
            flags.append("-DMMT_HAVE_HUGETLB")
        cg = self.features.get("hugetlb_cgroup")
        if cg:
            flags += ["-DMMT_HAVE_HUGETLB_CGROUP", f"-DMMT_HUGETLB_CGRP_ID={cg['cgrp_id']}",
                      f"-DMMT_SIZEOF_page_counter={cg['sizeof_page_counter']}"]
            orders = cg["hstate_orders"]
            flags += [f"-DMMT_HS_N={len(orders)}", "-DMMT_HS_ORDERS={" + ",".join(map(str, orders)) + "}"]
        for key, i in (self.features.get("mmap_lock_args") or {}).items():
            flags.append(f"-DMMT_ML_ARG_{key}={i}")
        if self.features.get("raw_unmapped_area"):
            flags.append("-DMMT_RAW_vm_unmapped_area")
        flags.append(f"-DMMT_VM_HUGETLB={VM_HUGETLB:#x}")
        for name, sid in self.syscalls.items():
            flags.append(f"-DMMT_SC_{name}={sid}")
            flags.append(f"-DMMT_SC_NARGS_{name}={self.syscall_nargs[name]}")
        if self.features.get("thread_size"):
            flags.append(f"-DMMT_THREAD_SIZE={self.features['thread_size']}")
        if self.syscall_hook == "raw" or self.syscall_nr32:
            flags.append(f"-DMMT_TS_COMPAT={TS_COMPAT:#x}")
        if self.syscall_hook == "raw":
            flags.append("-DMMT_SYSCALLS_RAW")
            flags += [f"-DMMT_NR_{name}={nr}" for name, nr in self.syscall_nr.items()]
        if self.syscall_nr32:
            flags.append("-DMMT_COMPAT_SYSCALLS")
            flags += [f"-DMMT_NR32_{name}={nr}" for name, nr in self.syscall_nr32.items()]
        if self.features.get("exit_group_dead"):
            flags.append("-DMMT_HAVE_exit_group_dead")
        if self.features.get("pt_regs_sp"):
            flags.append(f"-DMMT_OFF_PT_REGS_SP={self.features['pt_regs_sp']}")
        if self.features.get("tp_btf"):
            flags.append("-DMMT_TP_BTF")
        cast = self.features.get("rdonly_cast")
        if cast:
            flags += [f"-DMMT_KF_rdonly_cast={KFUNC_PLACEHOLDER['rdonly_cast']}",
                      f"-DMMT_BTF_vm_area_struct={cast['vm_area_struct']}"]
        return flags

    def windows(self) -> dict[str, tuple[int, int]]:
        """For structs read in one go: (first byte, length) covering every u64 member we read."""
        out = {}
        for struct in WINDOWED:
            offs = [off for key, off in self.offsets.items() if key.split(".")[0] == struct]
            if not offs:
                continue
            lo = min(offs) & ~7
            length = (max(offs) + 8 - lo + 7) & ~7
            if length > 256:
                raise KernelError(f"{struct}: members we read span {length} bytes; the one-read window needs <= 256")
            out[struct] = (lo, length)
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def find_headers() -> str | None:
    """A kernel header tree BCC can compile against, or None.

    The running kernel's own headers win.  Otherwise (no /lib/modules/$(uname
    -r)/build, as on this project's machines) fall back to the distribution's
    generic headers package: tracepoint arguments come from tracefs and every
    struct offset from BTF, so BCC only needs *a* consistent header tree.
    Debian splits it in an arch dir and a common dir; BCC needs both in one
    tree, so we build a private symlink tree rather than touching /usr/src.
    """
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env and os.path.isdir(env):
        return env
    own = f"/lib/modules/{platform.release()}/build"
    if os.path.isdir(os.path.join(own, "include")):
        return None  # BCC finds these by itself
    arch_dirs = sorted(
        d for d in glob.glob("/usr/src/linux-headers-*") if os.path.isdir(os.path.join(d, "arch/x86"))
        and not d.endswith("-common")
    )
    for arch in reversed(arch_dirs):
        # linux-headers-6.1.0-56-amd64 -> linux-headers-6.1.0-56-common
        common = re.sub(r"-[a-z0-9_]+$", "-common", arch)
        if not os.path.isdir(common):
            if os.path.isdir(os.path.join(arch, "include/linux")):
                return arch  # Ubuntu style: one self-contained tree
            continue
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmtrace" / "kheaders"
        dest = cache / Path(arch).name
        stamp = dest / ".mmtrace-complete"
        if not stamp.exists():
            _build_symlink_tree(common, arch, dest)
        return str(dest)
    return None


def _build_symlink_tree(common: str, arch: str, dest: Path) -> None:
    import shutil
    import subprocess
    import tempfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        subprocess.run(["cp", "-as", f"{common}/.", f"{tmp}/"], check=True)
        subprocess.run(["cp", "-as", "--remove-destination", f"{arch}/.", f"{tmp}/"], check=True)
        (tmp / ".mmtrace-complete").write_text(f"{common}\n{arch}\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def make_plan(tracefs: Tracefs | None = None, btf=None, compat_off: str = "") -> ProbePlan:
    """Discover tracepoints, syscalls and BTF offsets; raise KernelError if recording cannot work.

    ``compat_off``: why ia32 syscalls are not to be followed ("": follow them
    where this host can, see :func:`_compat_syscalls`)."""
    from .btf import Btf, BtfError

    tracefs = tracefs or Tracefs()
    if not tracefs.mounted:
        tracefs.mount()
    missing_req = [tp for tp in REQUIRED_TRACEPOINTS if not tracefs.exists(tp)]
    if missing_req:
        raise KernelError(
            "required tracepoint(s) missing on this kernel: " + ", ".join(missing_req)
            + " (maple tree tracepoints need Linux 6.1+ with CONFIG_TRACEPOINTS; run 'mmtrace doctor')"
        )
    used = list(REQUIRED_TRACEPOINTS) + [tp for tp in OPTIONAL_TRACEPOINTS if tracefs.exists(tp)]
    tps = {tp: tracefs.fields(tp) for tp in used}
    missing = [tp for tp in OPTIONAL_TRACEPOINTS if tp not in tps]
    syscalls: dict[str, int] = {}
    nargs: dict[str, int] = {}
    for name in SYSCALLS:
        enter, exit_ = f"syscalls:sys_enter_{name}", f"syscalls:sys_exit_{name}"
        if tracefs.exists(enter) and tracefs.exists(exit_):
            fields = [f for f in tracefs.fields(enter) if f["name"] != "__syscall_nr"]
            syscalls[name] = len(syscalls) + 1
            nargs[name] = len(fields)
            tps[enter] = fields
            tps[exit_] = tracefs.fields(exit_)
        else:
            missing += [enter]
    exit_fields = {f["name"] for f in tps["sched:sched_process_exit"]}
    try:
        btf = btf or Btf.load()
    except (OSError, BtfError) as e:
        raise KernelError(f"cannot read kernel BTF (/sys/kernel/btf/vmlinux): {e} (needs CONFIG_DEBUG_INFO_BTF)") from e
    def read_offsets(members) -> None:
        for s, m in members:
            try:
                offsets[f"{s}.{m}"] = btf.offsetof(s, m)
            except BtfError as e:
                raise KernelError(f"BTF lookup failed: {e}") from e

    offsets: dict[str, int] = {}
    read_offsets(BTF_MEMBERS)
    hugetlb = all(btf.has_member(s, m) for s, m in BTF_MEMBERS_HUGETLB)
    if hugetlb:
        read_offsets(BTF_MEMBERS_HUGETLB)
    raw_unmapped_area = "mmap:vm_unmapped_area" in tps and all(
        btf.has_member(s, m) for s, m in BTF_MEMBERS_UNMAPPED_AREA
    )
    if raw_unmapped_area:
        read_offsets(BTF_MEMBERS_UNMAPPED_AREA)
    hugetlb_cgroup: dict = {}
    if hugetlb and all(btf.has_member(s, m) for s, m in BTF_MEMBERS_HUGETLB_CGROUP):
        orders = hstate_orders()
        try:
            nslots = btf.member_size("hugetlb_cgroup", "rsvd_hugepage") // btf.sizeof("page_counter")
            cg_id = btf.enum_value("hugetlb_cgrp_id")
        except BtfError:
            nslots, cg_id = 0, -1
        if orders and len(orders) <= min(nslots, 4) and cg_id >= 0:
            read_offsets(BTF_MEMBERS_HUGETLB_CGROUP)
            hugetlb_cgroup = {"cgrp_id": cg_id, "sizeof_page_counter": btf.sizeof("page_counter"),
                              "hstate_orders": orders}
    mmap_lock_args = _mmap_lock_args(btf, tps, missing)
    tp_btf = _tp_btf(btf, [t.split(":")[1] for t in tps if t.startswith("maple_tree:")]
                     + (["vm_unmapped_area"] if raw_unmapped_area else []))
    rdonly_cast = _rdonly_cast(btf)
    hook, numbers = _syscall_hook(tracefs, btf, syscalls)
    if hook == "raw":
        read_offsets(BTF_MEMBERS_RAW_SYSCALLS)
        for name in syscalls:
            tps.pop(f"syscalls:sys_enter_{name}", None)
            tps.pop(f"syscalls:sys_exit_{name}", None)
        tps["raw_syscalls:sys_enter"] = tracefs.fields("raw_syscalls:sys_enter")
        tps["raw_syscalls:sys_exit"] = tracefs.fields("raw_syscalls:sys_exit")
    nr32, why32 = ({}, compat_off) if compat_off else _compat_syscalls(tracefs, btf, syscalls)
    if nr32:
        read_offsets(BTF_MEMBERS_COMPAT_SYSCALLS)
        tps.setdefault("raw_syscalls:sys_enter", tracefs.fields("raw_syscalls:sys_enter"))
        tps.setdefault("raw_syscalls:sys_exit", tracefs.fields("raw_syscalls:sys_exit"))
    return ProbePlan(
        kernel_release=platform.release(),
        tracepoints=tps,
        missing=missing,
        syscalls=syscalls,
        syscall_nargs=nargs,
        offsets=offsets,
        features={
            "exit_group_dead": "group_dead" in exit_fields,
            "hugetlb": hugetlb,
            "hugetlb_cgroup": hugetlb_cgroup,
            "raw_unmapped_area": raw_unmapped_area,
            "thread_size": MIN_THREAD_SIZE.get(platform.machine(), 0),
            # ia32 syscalls followed, or why not (mmtrace/model/coverage.py says it per process)
            "compat_syscalls": bool(nr32),
            "compat_syscalls_missing": why32,
            # where write/success are in the mmap_lock tracepoints' arguments (_mmap_lock_args)
            "mmap_lock_args": mmap_lock_args,
            # record -g reads the user stack pointer from task_pt_regs() (stacks.bpf.c)
            "pt_regs_sp": btf.offsetof("pt_regs", "sp") if btf.has_member("pt_regs", "sp") else 0,
            "tp_btf": tp_btf,
            "rdonly_cast": rdonly_cast,
        },
        headers=find_headers(),
        syscall_hook=hook,
        syscall_nr=numbers,
        syscall_nr32=nr32,
    )


def _mmap_lock_args(btf, tps: dict, missing: list[str]) -> dict[str, int]:
    """Which raw-tracepoint argument of mmap_lock_acquire_returned / _released is
    ``write`` and ``success`` (collectors/mmap_lock.bpf.c reads ``ctx->args[i]``).

    TP_PROTO changed (include/trace/events/mmap_lock.h): ``(mm, memcg_path,
    write[, success])`` on 6.1 (Debian's 6.1.0 guest), ``(mm, write[, success])``
    once the record carried a memcg id it computes itself (this host's 6.18).  BTF's ``btf_trace_<name>`` typedef has
    this kernel's: ``write`` is the first bool, ``success`` the second.  A
    tracepoint whose prototype is not understood is dropped (moved to
    ``missing``): the model then places the calls' silent changes without it.
    """
    from .btf import BtfError

    out: dict[str, int] = {}
    want = {"mmap_lock:mmap_lock_acquire_returned": ("acquire_write", "acquire_success"),
            "mmap_lock:mmap_lock_released": ("released_write",)}
    for tp, keys in want.items():
        try:
            args = btf.tracepoint_args(tp.split(":")[1]) if tp in tps else []
        except BtfError:
            args = []
        bools = [i for i, a in enumerate(args) if a == "int _Bool"]
        if args[:1] == ["pointer to struct mm_struct"] and len(bools) >= len(keys):
            out.update(zip(keys, bools))
    if len(out) == sum(len(keys) for keys in want.values()):
        return out
    # the collector needs both (mmap_lock.bpf.c): neither without the other
    for tp in want:
        if tps.pop(tp, None) is not None:
            missing.append(tp)
    return {}


def compat_unavailable(tracefs: Tracefs) -> str:
    """Why this host cannot follow ia32 syscalls at all, "" when it can (BTF
    aside, see :func:`_compat_syscalls`): the i386 table of this architecture,
    IA32 emulation built in (``do_fast_syscall_32``, the vDSO's entry of
    arch/x86/entry/syscall_32.c, in kallsyms), the raw_syscalls tracepoints.
    ``mmtrace doctor`` shows the same answer."""
    if SYSCALL_NR_32.get(platform.machine()) is None:
        return f"no 32-bit syscall table for {platform.machine()}"
    if not any(kallsyms_has(("do_fast_syscall_32", "ia32_sys_call")).values()):
        return "the kernel has no IA32 emulation (no do_fast_syscall_32)"
    if not (tracefs.exists("raw_syscalls:sys_enter") and tracefs.exists("raw_syscalls:sys_exit")):
        return "the raw_syscalls tracepoints are missing"
    return ""


def _compat_syscalls(tracefs: Tracefs, btf, syscalls: dict[str, int]) -> tuple[dict[str, int], str]:
    """(i386 numbers of the followed syscalls, "") when this host can follow ia32
    syscalls, else ({}, why not).  Feature checks: :func:`compat_unavailable`,
    and BTF for the registers and TS_COMPAT's word."""
    if os.environ.get(COMPAT_ENV, "1") == "0":
        return {}, f"{COMPAT_ENV}=0"
    why = compat_unavailable(tracefs)
    if why:
        return {}, why
    table = SYSCALL_NR_32[platform.machine()]
    lacking = [f"{s}.{m}" for s, m in BTF_MEMBERS_COMPAT_SYSCALLS if not btf.has_member(s, m)]
    if lacking:
        return {}, f"BTF lacks {', '.join(lacking)}"
    nr = {name: table[name] for name in syscalls if name in table}
    if "mmap" in nr:
        nr["old_mmap"] = table["old_mmap"]
    return nr, ""
# MMTRACE_DIRECT_READS=0: neither tp_btf nor bpf_rdonly_cast, i.e. every
# kernel struct read with bpf_probe_read_kernel() (differential tests, A/B).
_DIRECT_ENV = "MMTRACE_DIRECT_READS"
# Helper ids no helper has, called by the collectors where they mean a kfunc;
# the loader patches each call into the kfunc's (bpfsys.patch_kfunc_calls).
KFUNC_PLACEHOLDER = {"rdonly_cast": 0x7F00}


def _rdonly_cast(btf) -> dict[str, int]:
    """{"func": bpf_rdonly_cast's BTF id, "vm_area_struct": the struct's}
    when raw tracepoint programs can call that kfunc here, else {}: the tree
    hooks then read the stored VMA (and its file, inode, super_block) by
    direct loads instead of five bpf_probe_read_kernel() calls
    (collectors/vma.bpf.c mmt_vma_of).  Feature-checked by loading a probe."""
    if os.environ.get(_DIRECT_ENV, "1") == "0":
        return {}
    from . import bpfsys
    from .btf import BtfError

    fid = btf.func_id("bpf_rdonly_cast")
    try:
        sid = btf.struct_id("vm_area_struct")
    except BtfError:
        return {}
    try:
        if not fid or not bpfsys.rdonly_cast_works(fid, sid):
            return {}
    except OSError:
        return {}
    return {"func": fid, "vm_area_struct": sid}


def _tp_btf(btf, names: list[str]) -> dict[str, int]:
    """{tracepoint: its btf_trace_<name> typedef id} when the maple tree hooks
    and vm_unmapped_area can run as BTF-typed raw tracepoints (tp_btf), else
    {}.  Then their ``struct ma_state *`` (``struct vm_unmapped_area_info *``)
    is a BTF pointer the program reads by direct loads, where a raw
    tracepoint needs a bpf_probe_read_kernel() helper call per event
    (collectors/vma.bpf.c, mmap.bpf.c).  Feature-checked by loading a probe
    program; all of them or none, since the collectors take one -D flag.
    ``MMTRACE_DIRECT_READS=0`` keeps raw tracepoints (differential tests, A/B)."""
    if os.environ.get(_DIRECT_ENV, "1") == "0" or not names:
        return {}
    from . import bpfsys

    ids = {name: btf.typedef_id(f"btf_trace_{name}") for name in names}
    if not all(ids.values()):
        return {}
    try:
        if not bpfsys.tp_btf_works(ids[names[0]]):
            return {}
    except OSError:
        return {}
    return ids


def _syscall_hook(tracefs: Tracefs, btf, syscalls: dict[str, int]) -> tuple[str, dict[str, int]]:
    """("tracepoints", {}), or ("raw", numbers) when _HOOK_ENV asks for it; an
    explicit request this kernel cannot meet is an error, not a silent fallback."""
    want = os.environ.get(_HOOK_ENV, "tracepoints")
    if want not in ("raw", "tracepoints"):
        raise KernelError(f"{_HOOK_ENV}={want!r}: use 'raw' or 'tracepoints'")
    if want == "tracepoints":
        return "tracepoints", {}
    table = SYSCALL_NR.get(platform.machine())
    lacking = [f"{s}.{m}" for s, m in BTF_MEMBERS_RAW_SYSCALLS if not btf.has_member(s, m)]
    if table is None:
        why = f"no syscall table for {platform.machine()} (known: {', '.join(SYSCALL_NR)})"
    elif not (tracefs.exists("raw_syscalls:sys_enter") and tracefs.exists("raw_syscalls:sys_exit")):
        why = "the raw_syscalls tracepoints are missing"
    elif lacking:
        why = f"BTF lacks {', '.join(lacking)}"
    else:
        return "raw", {name: table[name] for name in syscalls if name in table}
    raise KernelError(f"{_HOOK_ENV}=raw: not on this kernel: {why} (unset it to use the per-syscall tracepoints)")


def kernel_config(name: str) -> str | None:
    """The value of CONFIG_<name> of the running kernel, or None when unknown.

    Read from /proc/config.gz (CONFIG_IKCONFIG_PROC) or /boot/config-<release>;
    neither exists on every host (Debian kernels have only the /boot file)."""
    import gzip

    key = f"CONFIG_{name}="
    for path, opener in ((Path("/proc/config.gz"), gzip.open),
                         (Path(f"/boot/config-{platform.release()}"), open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith(key):
                        return line[len(key):].strip().strip('"')
            return None  # the config is there and does not set it
        except OSError:
            continue
    return None


def mmap_min_addr() -> dict[str, int]:
    """The lowest address vm_unmapped_area() hands out, and where it comes from.

    ``mmap_min_addr``: max(vm.mmap_min_addr, CONFIG_LSM_MMAP_MIN_ADDR) when the
    kernel has CONFIG_SECURITY (update_mmap_min_addr() in security/min_addr.c),
    else the sysctl; ``dac_mmap_min_addr``: the sysctl itself.  The sysctl
    alone is not enough: this project's 6.18 host has vm.mmap_min_addr = 4096
    and CONFIG_LSM_MMAP_MIN_ADDR = 65536, and maps nothing below 65536.
    Since v6.4 ("mm: move 'mmap_min_addr' logic from callers into
    vm_unmapped_area()") the search itself starts there; 6.1's does not
    (mmtrace/detect/unmapped_area.py tells them apart)."""
    out: dict[str, int] = {}
    try:
        dac = int(Path("/proc/sys/vm/mmap_min_addr").read_text())
    except (OSError, ValueError):
        return out
    out["dac_mmap_min_addr"] = dac
    lsm = kernel_config("LSM_MMAP_MIN_ADDR") if kernel_config("SECURITY") == "y" else None
    out["mmap_min_addr"] = max(dac, int(lsm)) if lsm and lsm.isdigit() else dac
    return out


# Tracepoints that outlive their callers: the kernel text symbols that fire
# each one.  mmap:vma_store and mmap:vma_mas_szero are fired only from
# vma_mas_store() / vma_mas_remove() (and the inline vma_mas_szero()) of 6.1's
# mm/mmap.c; "mmap: convert __vma_adjust() to use vma iterator" and its series
# (v6.3) removed those, yet the events stayed in include/trace/events/mmap.h
# (Debian's 6.12 still lists both in tracefs) and never fire.
TRACEPOINT_CALLERS = {
    "mmap:vma_store": ("vma_mas_store",),
    "mmap:vma_mas_szero": ("vma_mas_remove", "vma_mas_store"),
}


def kallsyms_has(names: tuple[str, ...], path: str = "/proc/kallsyms") -> dict[str, bool]:
    """Which of ``names`` are kernel text symbols here (/proc/kallsyms lists
    text symbols even where data symbols are hidden)."""
    want = set(names)
    found: set[str] = set()
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in want:
                    found.add(parts[2])
    except OSError:
        pass
    return {n: n in found for n in names}


def tracepoints_without_callers(present: list[str]) -> list[str]:
    """Of the ``present`` tracepoints, those nothing in this kernel fires."""
    names = tuple({s for tp in present for s in TRACEPOINT_CALLERS.get(tp, ())})
    if not names:
        return []
    have = kallsyms_has(names)
    return [tp for tp in present if tp in TRACEPOINT_CALLERS and not any(have[s] for s in TRACEPOINT_CALLERS[tp])]
