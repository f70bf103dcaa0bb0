"""Nothing lost silently: under load, every event of a deterministic workload is in
the trace or counted lost, kind by kind.

mmloop (benchmarks/workloads/mmloop.c) makes the same events on every run: a base
(the loader, the warm-up) plus, per loop, 5 maple tree writes, 3 syscalls and one
vm_unmapped_area.  Two idle runs give base and per-loop counts; full-speed runs beside
a CPU hog (the recorder then gets a share of one core, the writer falls behind, the
drain leaves records in the rings) must add up exactly: events + lost.  This caught
a batch the drain thread moved after the recorder's last take (capture/recorder.py
drain_to_end)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

KINDS = ("tree_write", "syscall", "unmapped_area")
REPO = Path(__file__).resolve().parents[2]


def _mmloop(tmp: Path) -> Path:
    src = REPO / "benchmarks" / "workloads" / "mmloop.c"
    out = tmp / "mmloop"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (setup.sh installs gcc)"
    subprocess.run([cc, "-O2", "-Wall", "-I", str(src.parent), str(src), "-o", str(out)], check=True)
    return out


def _record(out: Path, argv: list[str]) -> tuple[dict, dict]:
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", *argv], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    md = json.loads((out / "metadata.json").read_text())
    assert md["complete"] is True
    return md["events"], md["lost"]


def test_every_event_is_written_or_counted_lost_under_load(root_only, tmp_path):
    mm = _mmloop(tmp_path)
    idle = {}
    for n in (2000, 4000):
        ev, lost = _record(tmp_path / f"idle{n}", [str(mm), "-n", str(n)])
        assert not any(lost.values()), lost
        idle[n] = ev
    per = {k: (idle[4000][k] - idle[2000][k]) // 2000 for k in KINDS}
    base = {k: idle[2000][k] - 2000 * per[k] for k in KINDS}
    assert per == {"tree_write": 5, "syscall": 3, "unmapped_area": 1}, per  # the loop's own events
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 2)]
    try:
        for run in range(3):
            n = 400_000
            ev, lost = _record(tmp_path / f"load{run}", [str(mm), "-n", str(n)])
            for k in KINDS:
                assert ev.get(k, 0) + lost.get(k, 0) == base[k] + per[k] * n, (run, k, ev, lost)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
