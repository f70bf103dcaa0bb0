"""The model against /proc/PID/maps on real programs, recorded as they are (root; never skipped).

Checkpoints are taken inside each traced program: the kernel's own mm
selftests (built here from Debian's linux-source package, which setup.sh
installs) through an LD_PRELOAD shim (tests/live/progs/cpshim.c) that copies
/proc/self/maps after every mmap/munmap/mprotect/mremap/madvise/mlock/
syscall() call; our own small programs take theirs themselves
(mmtrace/workloads/checkpoint.h).  Every checkpoint must match, a 32-bit
program's too (its ia32 syscalls are followed), or, when they are not followed,
it must be reported as not modelled.

What each one exercises (issue 13): mseal_test, mprotect failing part-way
on a sealed VMA (-EPERM) and of length 0; dlopen of a ``-z execstack``
library, mprotect(PROT_GROWSDOWN) of the stack; mt_churn, munmap holes seen
by other threads before the munmap returns; m32_maps, a compat process;
partial_fail, mremap/munmap/mprotect/mlock failing after changing some VMAs.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mmtrace
from mmtrace.capture.kernel import SYSCALL_NR, SYSCALL_NR_32
from mmtrace.cli.verify import verify
from tests.live.test_model_live import _check as _all_match
from tests.conftest import raise_hugepages

PROGS = Path(__file__).resolve().with_name("progs")
WORKLOADS = Path(mmtrace.__file__).resolve().with_name("workloads")
SELFTESTS = ("mseal_test", "mremap_test", "mremap_dontunmap", "mlock2-tests", "map_fixed_noreplace",
             "hugetlb-madvise", "thuge-gen")
_MM = "tools/testing/selftests/mm/"
_NEEDED = [f"{_MM}{n}.c" for n in (*SELFTESTS, "vm_util")] + [
    f"{_MM}{h}" for h in ("vm_util.h", "mlock2.h", "mseal_helpers.h")] + [
    "tools/testing/selftests/kselftest.h", "include/uapi/linux/fs.h"]


def _cc(*args: str) -> None:
    r = subprocess.run(["gcc", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"gcc {' '.join(args)}:\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    """The selftests and our programs, built from source here."""
    out = tmp_path_factory.mktemp("bins")
    tars = sorted(glob.glob("/usr/src/linux-source-*.tar.xz"))
    assert tars, "no /usr/src/linux-source-*.tar.xz: ./setup.sh installs Debian's linux-source package"
    src = out / "src"
    src.mkdir()
    top = Path(tars[-1]).name.removesuffix(".tar.xz")  # Debian's archive holds linux-source-X.Y/
    # one pass over the archive, only the files needed (GNU tar: xz is read once, ~1 min)
    r = subprocess.run(["tar", "-xJf", tars[-1], "-C", str(src), *(f"{top}/{p}" for p in _NEEDED)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    root = src / top
    mm = root / _MM
    # the uapi fs.h (pagemap_scan, newer than Debian 12's) the way headers_install.sh
    # prepares it: no __user, no compiler_types.h
    inc = out / "inc" / "linux"
    inc.mkdir(parents=True)
    txt = (root / "include/uapi/linux/fs.h").read_text()
    txt = txt.replace("#include <linux/compiler_types.h>", "").replace("__user ", "")
    (inc / "fs.h").write_text(txt)
    nr = SYSCALL_NR["x86_64"]["mseal"]  # glibc 2.36's headers predate mseal
    for n in SELFTESTS:
        extra = [str(mm / "vm_util.c")] if n in ("hugetlb-madvise", "thuge-gen") else []
        _cc("-O1", "-w", f"-D__NR_mseal={nr}", f"-I{out / 'inc'}", f"-I{mm}", "-o", str(out / n), str(mm / f"{n}.c"),
            *extra, "-lm")
    w = f"-I{WORKLOADS}"
    _cc("-O2", "-Wall", "-shared", "-fPIC", "-pthread", w, "-o", str(out / "cpshim.so"), str(PROGS / "cpshim.c"), "-ldl")
    _cc("-O2", "-Wall", "-pthread", w, "-o", str(out / "mt_churn"), str(PROGS / "mt_churn.c"))
    _cc("-O2", "-Wall", "-shared", "-fPIC", "-Wl,-z,execstack", "-o", str(out / "libexecstack.so"),
        str(PROGS / "execstack_lib.c"))
    _cc("-O2", "-Wall", w, "-o", str(out / "dlopen_execstack"), str(PROGS / "dlopen_execstack.c"), "-ldl")
    _cc("-O2", "-Wall", w, "-o", str(out / "partial_fail"), str(PROGS / "partial_fail.c"))
    _cc("-m32", "-O2", "-Wall", w, "-o", str(out / "m32_maps"), str(PROGS / "m32_maps.c"))
    # the bundled churn (forks, mremap, brk, madvise...) and the threaded churn, as ia32 programs
    _cc("-m32", "-O2", "-Wall", w, "-o", str(out / "churn32"), str(WORKLOADS / "churn.c"))
    _cc("-m32", "-O2", "-Wall", "-pthread", w, "-o", str(out / "mt_churn32"), str(PROGS / "mt_churn.c"))
    return out


def _record(tmp_path: Path, argv: list[str], shim: Path | None = None, env: dict | None = None) -> tuple[Path, Path]:
    cps = tmp_path / "cps"
    cps.mkdir()
    trace = tmp_path / "t.trace"
    pre = ["env", f"LD_PRELOAD={shim}", f"MMTRACE_CP_DIR={cps}"] if shim else []
    argv = [a.replace("{CPS}", str(cps)) for a in argv]
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(trace), "--", *pre, *argv],
                   check=True, stdout=subprocess.DEVNULL, env=None if env is None else {**os.environ, **env})
    return trace, cps


@pytest.mark.parametrize("name", SELFTESTS)
def test_kernel_selftest_checkpoints_match(root_only, bins, tmp_path, name):
    if name == "hugetlb-madvise":
        raise_hugepages(24)  # it skips (exit 4) with fewer than MIN_FREE_PAGES (20) free
    elif name == "thuge-gen":
        raise_hugepages(8)  # it skips a page size with fewer than 4 free
    trace, cps = _record(tmp_path, [str(bins / name)], shim=bins / "cpshim.so")
    _all_match(trace, cps)
    if name == "thuge-gen":
        # SysV segments (shmget(SHM_HUGETLB), shmat, shmdt, IPC_RMID) beside
        # MAP_HUGETLB mappings: reserved at shmget, which is not traced (R8 of
        # detect/hugetlb.py); before R8 this gave two model_kernel_disagree errors
        t = mmtrace.open(trace)
        assert (t.events("syscall")["syscall"] == "shmat").sum() >= 2
        assert len(t.anomalies()) == 0, t.anomalies()[["kind", "explanation"]].to_string()
        h = t.hugetlb()
        assert h["exact"].any() and not ((h["model_cg"] != h["cg_rsvd"]) & h["exact"]).any()
    if name == "mseal_test":
        # the failed calls that changed some VMAs are there
        sc = mmtrace.open(trace).events("syscall")
        assert ((sc["syscall"] == "mprotect") & (sc["ret"] == -1)).any()


def test_calls_failing_part_way(root_only, bins, tmp_path):
    """mremap moving several VMAs and refusing the sealed last one (the ones
    before it are moved: remap_move(), v6.17+), munmap ending in a sealed VMA,
    mprotect and mlock over a hole: every checkpoint matches."""
    trace, cps = _record(tmp_path, [str(bins / "partial_fail"), "{CPS}"])
    _all_match(trace, cps)
    sc = mmtrace.open(trace).events("syscall")
    failed = set(sc.loc[sc["ret"] < 0, "syscall"].astype(str))
    assert {"mremap", "munmap", "mprotect"} <= failed, failed  # (mlock is not followed: its splits are stores)
    # the failed mremap did move VMAs on this kernel (maps before and after it differ)
    from mmtrace.events.procmaps import read_checkpoints

    cp = read_checkpoints(cps)
    lines = {op: set(zip(g["start"], g["end"], g["perms"])) for op, g in cp.groupby("op")}
    assert lines["setup"] != lines["mremap-multi"]


def test_dlopen_execstack_library(root_only, bins, tmp_path):
    trace, cps = _record(tmp_path, [str(bins / "dlopen_execstack"), "{CPS}", str(bins / "libexecstack.so")])
    _all_match(trace, cps)
    sc = mmtrace.open(trace).events("syscall")
    assert ((sc["syscall"] == "mprotect") & ((sc["arg2"] & 0x01000000) != 0)).any()  # PROT_GROWSDOWN
    t = mmtrace.open(trace)
    pid = int(t.processes()["pid"].iloc[0])
    v = t.vmas(pid, int(sc["ts"].max()))
    stack = v[(v["vm_flags"].astype("int64") & 0x100) != 0]  # VM_GROWSDOWN
    # from the stack's start up to the page glibc named, executable (that glibc's range ends below the
    # top: the rest stays rw-p, split off by stores; the checkpoints above checked the layout)
    assert len(stack) >= 1 and stack["perms"].iloc[0] == "rwxp"


def test_threads_see_munmap_holes(root_only, bins, tmp_path):
    # 3 workers punch 2 MiB holes in faulted regions while the main thread reads maps.
    # Every checkpoint must match: a munmap's hole (its clear is silent when it removes
    # whole VMAs) is in the model from the call's mmap_write_downgrade on, the instant
    # other threads can see it (rules.visible_instants), hundreds of microseconds before
    # the munmap returns; and maps read while other threads change the tree is checked
    # as the reader walks it, VMA by VMA in address order (model/verify.py).
    trace, cps = _record(tmp_path, [str(bins / "mt_churn"), "{CPS}", "3", "200", "512"])
    res = verify(trace, cps)
    assert res.total >= 1000
    print(f"{res.matched}/{res.total} checkpoints match, {res.swept} read while other threads changed the tree")
    assert res.ok, f"{res.matched}/{res.total} checkpoints match\n" + "\n".join(m.describe() for m in res.mismatches[:5])
    t = mmtrace.open(trace)
    lk = t.events("mmap_lock")
    sc = t.events("syscall")
    # the instants the model used: one per munmap of a worker at least (its downgrade;
    # workers always share the mm with the main thread), inside the call
    mu = sc[(sc["syscall"] == "munmap") & (sc["tid"] != sc["tgid"])]
    lw = lk[(lk["syscall"] == "munmap") & (lk["tid"] != lk["tgid"])]
    assert len(mu) > 100 and len(lw) >= len(mu)
    first = lw.groupby("tid")["ts"].min()
    assert (first >= mu.groupby("tid")["ts_enter"].min().reindex(first.index)).all()


def test_single_threaded_process_needs_no_lock_instants(root_only, tmp_path):
    # mm_users == 1: no one else can see the tree before the call returns, so the
    # collector records no mmap_lock instant (collectors/mmap_lock.bpf.c), and the
    # model, placing the silent changes at the exits, still matches every checkpoint.
    # execve locks the new mm, not current->mm: its instants are recorded.
    from mmtrace.workloads import build

    trace, cps = _record(tmp_path, [str(build("churn")), "--seed", "3", "--ops", "600", "--checkpoints", "{CPS}"])
    _all_match(trace, cps)
    t = mmtrace.open(trace)
    sc = t.events("syscall")
    assert (sc["syscall"] == "munmap").sum() > 50
    lk = t.events("mmap_lock")
    assert set(lk["syscall"].astype(str)) <= {"execve"}, lk.to_string()


def test_32bit_process_checkpoints_match(root_only, bins, tmp_path):
    # its ia32 syscalls are followed (raw_syscalls with the i386 numbers): modelled, every checkpoint
    trace, cps = _record(tmp_path, [str(bins / "m32_maps"), "{CPS}"])
    _all_match(trace, cps)
    t = mmtrace.open(trace)
    p = t.processes()
    assert p["modelled"].all() and (p["not_modelled_reason"] == "").all()
    pid = int(p[p["comm"] == "m32_maps"]["pid"].iloc[0])
    sc = t.events("syscall")
    sc = sc[sc["tgid"] == pid]
    compat = sc[(sc["flags"] & 0x2) != 0]  # MMT_SC_COMPAT
    i386 = SYSCALL_NR_32["x86_64"]
    got = set(zip(compat["syscall"].astype(str), compat["nr"].tolist()))
    assert {("mmap", i386["mmap"]), ("mprotect", i386["mprotect"]), ("munmap", i386["munmap"]),
            ("brk", i386["brk"])} <= got
    # mmap2's offset is in pages: the record holds bytes, as a native mmap's (ld.so maps libc at offsets)
    mm = compat[compat["syscall"] == "mmap"]
    assert (mm["arg5"] % 4096 == 0).all() and (mm["arg5"] > 0).any()
    assert (compat["arg0"] < (1 << 32)).all() and (compat[compat["ret"] > 0]["ret"] < (1 << 32)).all()


@pytest.mark.parametrize("argv", [["churn32", "--seed", "1", "--ops", "300", "--forks", "2", "--hugetlb", "off",
                                   "--checkpoints", "{CPS}"],
                                  ["mt_churn32", "{CPS}", "3", "200", "512"]], ids=["churn32", "mt_churn32"])
def test_32bit_churn_checkpoints_match(root_only, bins, tmp_path, argv):
    trace, cps = _record(tmp_path, [str(bins / argv[0]), *argv[1:]])
    res = verify(trace, cps)
    assert res.total >= 300 and res.ok, f"{res.matched}/{res.total}\n" + "\n".join(
        m.describe() for m in res.mismatches[:5])
    p = mmtrace.open(trace).processes()
    assert len(p) >= 1 and p["modelled"].all()


def test_32bit_process_is_said_not_modelled_when_not_followed(root_only, bins, tmp_path):
    trace, cps = _record(tmp_path, [str(bins / "m32_maps"), "{CPS}"], env={"MMTRACE_COMPAT_SYSCALLS": "0"})
    t = mmtrace.open(trace)
    p = t.processes()
    row = p[p["comm"] == "m32_maps"]
    assert len(row) == 1 and not bool(row["modelled"].iloc[0])
    assert "32-bit" in row["not_modelled_reason"].iloc[0]
    assert "MMTRACE_COMPAT_SYSCALLS=0" in row["not_modelled_reason"].iloc[0]
    assert (p[p["comm"] != "m32_maps"]["modelled"]).all()
    from mmtrace.report.text import report_text

    assert "NOT MODELLED: pid" in report_text(t)


@pytest.mark.parametrize("flag", [[], ["--compat"]])
def test_32bit_program_started_by_a_64bit_one(root_only, bins, tmp_path, flag):
    """ia32 syscalls are followed only where a target needs it (following them
    runs a program at every syscall of the host): a 32-bit program exec'd by a
    64-bit launcher is not modelled, and says 'record --compat'; with
    --compat it is modelled and matches."""
    cps = tmp_path / "cps"
    cps.mkdir()
    trace = tmp_path / "t.trace"
    env = {k: v for k, v in os.environ.items() if k != "MMTRACE_COMPAT_SYSCALLS"}
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", *flag, "-o", str(trace), "--",
                    "env", str(bins / "m32_maps"), str(cps)], check=True, stdout=subprocess.DEVNULL, env=env)
    t = mmtrace.open(trace)
    p = t.processes()
    row = p[p["comm"] == "m32_maps"]
    assert len(row) == 1
    if flag:
        assert bool(row["modelled"].iloc[0]) and t.metadata["probe_plan"]["features"]["compat_syscalls"]
        _all_match(trace, cps)
    else:
        assert not bool(row["modelled"].iloc[0])
        assert "record --compat" in row["not_modelled_reason"].iloc[0]
