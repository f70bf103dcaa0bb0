"""Live: the compiled-module cache and the recorder's footprint (root + BCC).

A recording compiles once per plan and kernel (BCC, in a child process), and
the next loads the cached module: both must record the same events.  The
recording process itself never maps LLVM/libbcc nor imports pandas.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mmtrace
from tests.conftest import compile_c

pytestmark = pytest.mark.live

MMTRACE = [sys.executable, "-m", "mmtrace"]

LOOP_C = r"""
#include <sys/mman.h>
#include <unistd.h>
int main(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < 500; i++) {
		char *a = mmap(0, 16 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		mprotect(a + 6 * pg, 4 * pg, PROT_READ);
		munmap(a, 16 * pg);
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cacheloop")
    return compile_c(d, "loop", LOOP_C)


def _record(out: Path, cmd: list[str], cache: Path) -> mmtrace.Trace:
    env = dict(os.environ, MMTRACE_CACHE_DIR=str(cache))
    r = subprocess.run(MMTRACE + ["record", "-q", "-o", str(out), "--"] + cmd, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return mmtrace.open(out)


def test_compiled_then_cached_record_the_same(tmp_path, loop):
    cache = tmp_path / "cache"
    first = _record(tmp_path / "a.trace", [str(loop)], cache)
    entries = list(cache.glob("*.json"))
    assert first.metadata["bpf_module"] == "compiled" and len(entries) == 1
    second = _record(tmp_path / "b.trace", [str(loop)], cache)
    assert second.metadata["bpf_module"] == "cached"
    assert list(cache.glob("*.json")) == entries
    for t in (first, second):
        assert sum(t.lost.values()) == 0
        sc = t.events("syscall")
        counts = sc["syscall"].value_counts()
        assert counts["mmap"] >= 500 and counts["mprotect"] >= 500 and counts["munmap"] >= 500
    # Same workload, same module: the same records of the loop's own calls.
    def mine(t):
        ev = t.metadata["events"]
        return {k: ev.get(k, 0) for k in ("tree_write", "unmapped_area")}, \
            t.events("syscall").groupby("syscall", observed=True).size().to_dict()
    assert mine(first) == mine(second)
    # A cache entry others could write is not trusted: compiled again, and replaced.
    os.chmod(entries[0], 0o666)
    third = _record(tmp_path / "c.trace", ["true"], cache)
    assert third.metadata["bpf_module"] == "compiled"
    assert entries[0].stat().st_mode & 0o777 == 0o600


def test_recorder_holds_no_llvm_nor_pandas(tmp_path):
    cache = tmp_path / "cache"  # empty: this recording compiles, in a child
    out = tmp_path / "s.trace"
    env = dict(os.environ, MMTRACE_CACHE_DIR=str(cache))
    p = subprocess.Popen(MMTRACE + ["record", "-q", "-o", str(out), "--", "sleep", "30"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metadata.json").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.stderr else ""
            time.sleep(0.05)
        maps = Path(f"/proc/{p.pid}/maps").read_text()
        for lib in ("libLLVM", "libclang", "libbcc", "/pandas/"):
            assert lib not in maps, f"the recorder maps {lib}"
    finally:
        p.terminate()
        p.wait(timeout=60)
    t = mmtrace.open(out)
    assert t.complete and t.metadata["bpf_module"] == "compiled"
