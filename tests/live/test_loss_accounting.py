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


def _nice_of(stat_line: str) -> int:
    return int(stat_line.rsplit(")", 1)[1].split()[16])  # field 19 of /proc/PID/stat


def test_the_recorder_outranks_the_command_and_the_command_keeps_its_nice(root_only, tmp_path):
    """Its threads at loader.RECORDER_NICE (the drain keeps up when the traced processes
    leave no idle core: the loss test above); the command at the nice it was given."""
    from mmtrace.capture.loader import RECORDER_NICE

    out = tmp_path / "t.trace"
    script = 'sleep 0.5; cat /proc/$PPID/task/*/stat; cat /proc/$$/stat'
    r = subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--", "sh", "-c", script],
                       check=True, capture_output=True, text=True)
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    recorder, command = [_nice_of(x) for x in lines[:-1]], _nice_of(lines[-1])
    assert command == 0, r.stdout
    assert recorder.count(RECORDER_NICE) >= 2, recorder  # the main thread and the drain thread
    assert json.loads((out / "metadata.json").read_text())["recorder_nice"] == RECORDER_NICE
    # A recorder the user started niced keeps that nice value (and so does its command).
    r = subprocess.run(["nice", "-n", "5", sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(tmp_path / "n"),
                        "--", "sh", "-c", script], check=True, capture_output=True, text=True)
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert {_nice_of(x) for x in lines} == {5}, r.stdout


def test_record_in_process_gives_the_caller_its_priority_back(root_only, tmp_path):
    from mmtrace.capture.recorder import RecordOptions, record

    before = os.getpriority(os.PRIO_PROCESS, 0)
    record(RecordOptions(output=tmp_path / "t.trace", command=["true"], progress=False))
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
