"""Live: what differs between kernels, asserted on whichever kernel runs (root; never skipped).

tests/vm/run boots other kernels (Debian's 6.1, 6.12) and runs this file there
too, so every branch below runs somewhere in CI: 6.18 on the host, 6.1 in the
guest.

- ``mmap:vma_store`` / ``mmap:vma_mas_szero`` (v6.1-v6.2 callers): when the
  kernel has them, they are recorded and decoded, and each one is the same
  store as the ``maple_tree:ma_write`` that follows it on that task
  (vma_mas_store(), vma_mas_remove(), vma_mas_szero() in 6.1's mm/mmap.c
  set the range and call mas_store_prealloc() right after the event): they
  add nothing the model does not already replay, so it does not use them.
  6.12 still has both tracepoints but not their callers: nothing fires them.
- ``vm_unmapped_area``'s low limit: 6.1 searches from the caller's low_limit,
  v6.4+ from mmap_min_addr at the lowest (detect/unmapped_area.py).
- ``mmtrace doctor``: every row says what this kernel has.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import mmtrace
from mmtrace.cli.verify import verify
from mmtrace.workloads import build
from tests.conftest import compile_c


def _record(out: Path, argv: list[str]) -> mmtrace.Trace:
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", *argv], check=True)
    return mmtrace.open(out)


def _tracepoint_exists(name: str) -> bool:
    group, event = name.split(":")
    return any(Path(d, "events", group, event).is_dir() for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))


def _same_store_follows(vs, tw) -> np.ndarray:
    """For each vma_store row, is the next tree_write of its task the same store?"""
    tw = tw.sort_values("ts", kind="stable")
    ok = np.zeros(len(vs), dtype=bool)
    by_tid = {tid: g for tid, g in tw.groupby("tid")}
    for i, r in enumerate(vs.itertuples(index=False)):
        g = by_tid.get(r.tid)
        if g is None:
            continue
        after = g[g["ts"] >= r.ts]
        if len(after) == 0:
            continue
        w = after.iloc[0]
        ok[i] = (int(w["tree"]) == int(r.mt) and int(w["index"]) == int(r.start)
                 and int(w["last"]) == int(r.end) and int(w["val"]) == int(r.vma)
                 and w["fn"] == "mas_store_prealloc")
    return ok


def test_vma_store_events_are_the_tree_writes(root_only, tmp_path):
    cps = tmp_path / "cps"
    cps.mkdir()
    t = _record(tmp_path / "d.trace", [str(build("demo")), "--checkpoints", str(cps)])
    plan = t.metadata["probe_plan"]
    vs = t.events("vma_store")
    res = verify(tmp_path / "d.trace", cps)
    assert res.total > 0 and res.matched == res.total, f"{res.matched}/{res.total} checkpoints match"
    for tp in ("mmap:vma_store", "mmap:vma_mas_szero"):
        # attached exactly when the kernel has the tracepoint
        assert (tp in plan["tracepoints"]) == _tracepoint_exists(tp), tp
        assert (tp in plan["missing"]) != _tracepoint_exists(tp), tp
    # The tracepoints outlived their callers (6.12 still has them): the
    # callers' text symbols say whether they can fire, from /proc/kallsyms
    # directly (not through mmtrace's own TRACEPOINT_CALLERS lookup).
    syms = {line.split()[2] for line in Path("/proc/kallsyms").read_text().splitlines()
            if line.endswith(" vma_mas_store") or line.endswith(" vma_mas_remove")}
    if not _tracepoint_exists("mmap:vma_store") or "vma_mas_store" not in syms:
        assert len(vs) == 0
        return
    stores = vs[vs["op"] == 0]
    zeros = vs[vs["op"] == 1]
    # the demo maps, splits, merges and unmaps: both kinds fire on 6.1
    assert len(stores) >= 20 and len(zeros) >= 1, vs["op"].value_counts().to_dict()
    assert (vs["end"] > vs["start"]).all()
    assert (stores["vma"] != 0).all() and (zeros["vma"] == 0).all()
    tw = t.events("tree_write")
    ok = _same_store_follows(vs, tw)
    assert ok.all(), vs[~ok].head(10).to_string()


# Fill the whole address space with PROT_NONE mappings, largest first, and
# print the lowest address the kernel handed out.  Untouched PROT_NONE
# NORESERVE private mappings cost neither memory nor commit charge.
FILL_C = r"""
#include <stdio.h>
#include <sys/mman.h>
int main(void)
{
	unsigned long lowest = ~0UL;
	for (int shift = 46; shift >= 12; shift--) {
		for (int i = 0; i < 64; i++) {
			void *p = mmap(NULL, 1UL << shift, PROT_NONE,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (p == MAP_FAILED)
				break;
			if ((unsigned long)p < lowest)
				lowest = (unsigned long)p;
		}
	}
	printf("%lu\n", lowest);
	return 0;
}
"""


def test_unmapped_area_in_a_full_address_space(root_only, tmp_path):
    """The search's low limit differs between kernels (first_fit's clamp_low):
    6.1 searches down to the caller's low_limit (PAGE_SIZE on x86), v6.4+ not
    below mmap_min_addr.  Root (CAP_SYS_RAWIO) may map below mmap_min_addr, so
    filling the address space shows which rule this kernel follows, and the
    cross-check must agree with every search either way."""
    exe = compile_c(tmp_path, "fill", FILL_C)
    out = tmp_path / "f.trace"
    p = subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", str(exe)],
                       check=True, capture_output=True, text=True)
    lowest = int(p.stdout.split()[-1])
    t = mmtrace.open(out)
    mmap_min = int(t.metadata["mmap_min_addr"])
    ua = t.unmapped_area_check()
    assert len(ua) > 20
    assert (ua["err"] != 0).any()  # the space did fill up
    assert ua["agrees"].all(), ua[~ua["agrees"]].head(10).to_string()
    # the kernel's own answers say which rule it follows; the check followed it
    below = ua[(ua["err"] == 0) & (ua["addr"] < mmap_min)]
    assert (lowest < mmap_min) == (len(below) > 0)
    if len(below):
        assert (below["expected"] == below["addr"]).all()


def test_doctor_rows_match_this_kernel(root_only):
    """Every row of `mmtrace doctor` says what this kernel has, read here
    straight from tracefs and sysfs (not through mmtrace's own Tracefs)."""
    from mmtrace.capture.kernel import OPTIONAL_TRACEPOINTS, REQUIRED_TRACEPOINTS, SYSCALLS

    p = subprocess.run([sys.executable, "-m", "mmtrace", "doctor"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {}
    for line in p.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in ("ok", "warn", "FAIL", "fail"):
            for name in ["kernel BTF", "syscall tracepoints", "tracefs", "kernel headers", "32-bit (ia32) syscalls"] + [
                    f"tracepoint {tp}" for tp in REQUIRED_TRACEPOINTS + OPTIONAL_TRACEPOINTS]:
                if parts[1].startswith(name + " "):
                    rows[name] = (parts[0], parts[1][len(name):].strip())
    syms = {line.split()[2] for line in Path("/proc/kallsyms").read_text().splitlines()
            if line.endswith(" vma_mas_store") or line.endswith(" vma_mas_remove")}
    for tp in REQUIRED_TRACEPOINTS + OPTIONAL_TRACEPOINTS:
        status, detail = rows[f"tracepoint {tp}"]
        fires = _tracepoint_exists(tp) and (tp not in ("mmap:vma_store", "mmap:vma_mas_szero") or bool(syms))
        assert (status == "ok") == fires, (tp, status, detail)
    assert (rows["kernel BTF"][0] == "ok") == Path("/sys/kernel/btf/vmlinux").exists()
    absent = [s for s in SYSCALLS if not _tracepoint_exists(f"syscalls:sys_enter_{s}")]
    detail = rows["syscall tracepoints"][1]
    assert detail.startswith(f"{len(SYSCALLS) - len(absent)}/{len(SYSCALLS)} present"), detail
    for s in absent:
        assert s in detail.split("absent:", 1)[1], (s, detail)
    # ia32 syscalls can be followed where the kernel has IA32 emulation (kallsyms) and raw_syscalls
    ksyms = {line.split()[2] for line in Path("/proc/kallsyms").read_text().splitlines()
             if line.endswith((" do_fast_syscall_32", " ia32_sys_call"))}
    ia32 = bool(ksyms) and _tracepoint_exists("raw_syscalls:sys_enter")
    assert (rows["32-bit (ia32) syscalls"][0] == "ok") == ia32, rows["32-bit (ia32) syscalls"]
    assert "--compat" in rows["32-bit (ia32) syscalls"][1] or not ia32
    status, where = rows["kernel headers"]
    assert status == "ok" and Path(where.split()[0], "include").is_dir(), where
