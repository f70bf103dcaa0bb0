"""Live: the tree and unmapped-area hooks as BTF-typed raw tracepoints (tp_btf)
record exactly what the raw tracepoints record (root + BCC).

With tp_btf (capture/kernel.py _tp_btf, -DMMT_TP_BTF) the collectors read
``struct ma_state`` and ``struct vm_unmapped_area_info`` by direct loads
instead of bpf_probe_read_kernel(); ``MMTRACE_DIRECT_READS=0`` keeps the raw
tracepoints.  The same program, run with ASLR off (setarch -R), makes the same
maple tree writes and unmapped-area searches: every field that is not a
kernel pointer must agree, record by record, from its exec on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mmtrace
from mmtrace.capture.kernel import make_plan
from tests.conftest import compile_c

pytestmark = pytest.mark.live

MMTRACE = [sys.executable, "-m", "mmtrace"]

PROG_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	int fd = open("/proc/self/exe", O_RDONLY);
	for (int i = 0; i < 300; i++) {
		char *a = mmap(0, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mprotect(a + 6 * pg, 4 * pg, PROT_READ);            /* split in three */
		mprotect(a + 6 * pg, 4 * pg, PROT_READ | PROT_WRITE); /* merge back */
		char *f = mmap(0, pg, PROT_READ, MAP_PRIVATE, fd, 0);
		a = mremap(a, 16 * pg, 32 * pg, MREMAP_MAYMOVE);
		munmap(f, pg);
		munmap(a + 8 * pg, 4 * pg);                          /* a hole */
		munmap(a, 32 * pg);
	}
	return 0;
}
"""

# Kernel pointers (and what follows from them) differ between two runs.
POINTERS = {"ts", "ts_enter", "tree", "mm", "node", "val", "fn", "cpu", "tgid", "tid", "pid"}


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tpbtf")
    return compile_c(d, "prog", PROG_C)


def _record(out: Path, prog: Path, tp_btf: bool) -> mmtrace.Trace:
    env = dict(os.environ, MMTRACE_DIRECT_READS="1" if tp_btf else "0")
    setarch = shutil.which("setarch")
    assert setarch, "setarch (util-linux) is part of every Debian host"
    r = subprocess.run(MMTRACE + ["record", "-q", "-o", str(out), "--", setarch, "-R", str(prog)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return mmtrace.open(out)


def _after_exec(t: mmtrace.Trace, kind: str):
    proc = t.events("proc")
    ex = proc[(proc["what"] == "exec") & proc["filename"].str.endswith("/prog")]
    assert len(ex) == 1, proc
    df = t.events(kind)
    df = df[df["ts"] >= ex["ts"].iloc[0]].sort_values("ts")
    return df[[c for c in df.columns if c not in POINTERS]].reset_index(drop=True)


def test_tp_btf_records_what_raw_tracepoints_record(tmp_path, prog):
    if not make_plan().features.get("tp_btf"):
        pytest.skip("this kernel cannot load tp_btf programs (capture/kernel.py _tp_btf): raw tracepoints only")
    raw = _record(tmp_path / "raw.trace", prog, tp_btf=False)
    typed = _record(tmp_path / "typed.trace", prog, tp_btf=True)
    assert raw.metadata["probe_plan"]["features"]["tp_btf"] == {}
    assert set(typed.metadata["probe_plan"]["features"]["tp_btf"]) >= {"ma_write", "vm_unmapped_area"}
    assert raw.metadata["probe_plan"]["features"]["rdonly_cast"] == {}
    assert typed.metadata["probe_plan"]["features"]["rdonly_cast"]
    for t in (raw, typed):
        assert sum(t.lost.values()) == 0
    for kind in ("tree_write", "unmapped_area"):
        a, b = _after_exec(raw, kind), _after_exec(typed, kind)
        assert len(a) > 300 * (8 if kind == "tree_write" else 2), (kind, len(a))
        assert a.equals(b), (kind, a.compare(b) if a.shape == b.shape else (a.shape, b.shape))
        if kind == "tree_write":  # the file mapping's identity went through the direct loads too
            assert (b["ino"] != 0).sum() >= 300 and (b["vm_start"] != 0).sum() >= 300 * 4
