"""Live: ``mmtrace export --perfetto`` of a fresh recording (threads, fork, exec), read back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.golden.test_perfetto import check_round_trip

pytestmark = pytest.mark.live

WORKLOAD = r"""
import mmap, os, threading
def work():
    m = [mmap.mmap(-1, 1 << 16) for _ in range(8)]
    for x in m:
        x.close()
ts = [threading.Thread(target=work) for _ in range(3)]
[t.start() for t in ts]; [t.join() for t in ts]
pid = os.fork()
if pid == 0:
    os.execv("/bin/true", ["true"])
os.waitpid(pid, 0)
"""


def test_export_fresh_recording(root_only, tmp_path):
    trace = tmp_path / "t.trace"
    r = subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(trace), "--", sys.executable, "-c",
                        WORKLOAD], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "t.pftrace"
    r = subprocess.run([sys.executable, "-m", "mmtrace", "export", "--perfetto", str(trace), "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr and "processes" in r.stderr
    check_round_trip(trace, out)
    from tests.golden.test_perfetto import read_back

    tracks, events, _, _ = read_back(out)
    threads = [d for d in tracks.values() if d.HasField("thread")]
    assert len(threads) >= 4  # the main thread and its three workers made syscalls
