#!/usr/bin/env python3
"""What starting a recording costs, step by step: Python imports, the probe
plan (tracefs + BTF), BCC's compile and load of the collectors, and tearing it
down.  Prints one line per step (seconds, wall clock).  Run as root, on the
host or in a tests/vm guest, where TCG makes clang's compile the dear part:

    sudo .venv/bin/python benchmarks/load_time.py [--repeat N]
    sudo tests/vm/run --kernel 6.1 -- .venv/bin/python benchmarks/load_time.py
"""

from __future__ import annotations

import argparse
import platform
import time

t0 = time.monotonic()
import mmtrace.cli.main  # noqa: E402,F401  (what `mmtrace record` imports)

t_import = time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2, help="loads to time (default 2)")
    args = ap.parse_args()
    from mmtrace.capture.kernel import make_plan
    from mmtrace.capture.loader import Collector

    print(f"kernel {platform.release()}")
    print(f"import mmtrace.cli.main      {t_import:8.2f} s")
    t = time.monotonic()
    plan = make_plan()
    print(f"make_plan (tracefs, BTF)    {time.monotonic() - t:8.2f} s")
    for i in range(args.repeat):
        t = time.monotonic()
        c = Collector(plan, pids=[])
        t_load = time.monotonic() - t
        t = time.monotonic()
        c.close()
        print(f"BCC compile + load #{i + 1}      {t_load:8.2f} s   (close {time.monotonic() - t:.2f} s)")


if __name__ == "__main__":
    main()
