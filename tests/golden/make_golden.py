"""Writes the expected CSVs for the golden trace (review the diff before committing).

    .venv/bin/python tests/golden/make_golden.py
"""

from pathlib import Path

import mmtrace

DATA = Path(__file__).parent / "data"


def expected_frames(t):
    """The frames the golden test compares, as CSV-ready DataFrames."""
    procs = t.processes()
    procs = procs.assign(exec=procs["exec"].map(lambda e: ";".join(e)), trees=procs["trees"].map(len))
    sc = t.events("syscall")
    sc = sc[["tgid", "tid", "syscall", "arg0", "arg1", "arg2", "arg3", "ret", "comm"]]
    proc = t.events("proc")[["ts", "tgid", "tid", "what", "pid", "child_tgid", "flags", "comm", "filename"]]
    return {"processes": procs, "syscalls": sc, "proc": proc}


if __name__ == "__main__":
    t = mmtrace.open(DATA / "demo.trace")
    for name, df in expected_frames(t).items():
        df.to_csv(DATA / f"demo.{name}.csv", index=False)
        print(name, len(df))
