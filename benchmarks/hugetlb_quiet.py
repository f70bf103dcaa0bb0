#!/usr/bin/env python3
"""How often the hugetlb model cries wolf: issue 12's target over many recordings.

Records the bundled hugetlb churn with forks (``mmtrace/workloads/hugetlb_churn.c``,
the first 13 configurations of ``tests/live/test_hugetlb_live.py``: seeds
1-10 with 3 processes, 1-3 with 4) ``--rounds`` times, and prints per configuration and in
all:

  runs            recordings made
  quiet runs      recordings with no finding at all (the target: every run)
  findings        by kind (model_kernel_disagree errors, model_kernel_undecided notes, ...)
  samples / exact hugetlb cgroup samples compared, and how many were exact
  exact mismatch  exact samples where the model's cgroup count differs from the kernel's

    sudo .venv/bin/python benchmarks/hugetlb_quiet.py --rounds 5 [--keep DIR [--keep-all]] [--json FILE]
    .venv/bin/python benchmarks/hugetlb_quiet.py --load DIR [--json FILE]

``--keep DIR`` keeps the traces of runs with findings there (for a look with
``t.hugetlb()``), ``--keep-all`` every trace; the others are deleted.
``--load DIR`` records nothing: it analyses the traces kept in DIR (named
``r<round>-s<seed>-p<procs>.trace``) with the model on ``sys.path``, so that two
models can be compared on the same recordings (the script puts its own
checkout first: run each checkout's copy, or a copy outside any checkout with
PYTHONPATH naming the model).  Recording needs root and vm.nr_hugepages >= 8 (raised if
lower, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mmtrace  # noqa: E402
from mmtrace.capture.host import raise_hugepages  # noqa: E402
from mmtrace.workloads import build  # noqa: E402

CONFIGS = [(s, 3) for s in range(1, 11)] + [(s, 4) for s in (1, 2, 3)]


def record(out: Path, seed: int, procs: int) -> None:
    """Record one churn run into ``out``."""
    subprocess.run([sys.executable, "-m", "mmtrace", "record", "-q", "-o", str(out), "--",
                    str(build("hugetlb_churn")), "--seed", str(seed), "--ops", "300", "--pages", "6",
                    "--procs", str(procs)], check=True, stdout=subprocess.DEVNULL)


def measure(out: Path, seed: int, procs: int) -> dict:
    """Count what the model says of the trace ``out``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = mmtrace.open(out)
        a = t.anomalies()
        h = t.hugetlb()
    cg = h[h["evidence"] == "cgroup"]
    ex = cg[cg["exact"]]
    return {"seed": seed, "procs": procs, "findings": dict(Counter(a["kind"].astype(str))),
            "samples": len(cg), "exact": len(ex), "exact_mismatch": int((ex["cg_rsvd"] != ex["model_cg"]).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="recordings per configuration (default: %(default)s)")
    p.add_argument("--keep", type=Path, help="keep the traces of runs with findings in this directory")
    p.add_argument("--keep-all", action="store_true", help="with --keep: keep every trace, not only those with findings")
    p.add_argument("--load", type=Path, help="record nothing: analyse the traces kept in this directory")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    a = p.parse_args(argv)
    runs = []
    if a.load:
        for out in sorted(a.load.glob("r*-s*-p*.trace"), key=lambda x: [int(n) for n in re.findall(r"\d+", x.name)]):
            r, seed, procs = (int(n) for n in re.findall(r"\d+", out.name))
            runs.append(_print(r, measure(out, seed, procs)))
        return _summary(runs, a.json)
    if raise_hugepages(8) < 8:
        sys.exit("hugetlb_quiet.py: the kernel kept vm.nr_hugepages below 8")
    with tempfile.TemporaryDirectory(prefix="mmtrace-hq-") as tmp:
        for r in range(a.rounds):
            for seed, procs in CONFIGS:
                out = Path(tmp) / f"r{r}-s{seed}-p{procs}.trace"
                record(out, seed, procs)
                res = _print(r, measure(out, seed, procs))
                runs.append(res)
                if (res["findings"] or a.keep_all) and a.keep:
                    a.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copytree(out, a.keep / out.name, dirs_exist_ok=True)
                shutil.rmtree(out, ignore_errors=True)
    return _summary(runs, a.json)


def _print(r: int, res: dict) -> dict:
    print(f"round {r + 1} seed {res['seed']} procs {res['procs']}: {res['samples']} samples, {res['exact']} exact, "
          f"{res['exact_mismatch']} exact mismatches, findings {res['findings'] or 'none'}", file=sys.stderr)
    return res


def _summary(runs: list[dict], json_out: Path | None) -> int:
    kinds = Counter()
    for x in runs:
        kinds.update(x["findings"])
    quiet = sum(1 for x in runs if not x["findings"])
    print(f"runs: {len(runs)}  quiet runs: {quiet} ({100 * quiet / max(len(runs), 1):.1f}%)")
    print(f"findings: {dict(kinds) or 'none'}  (runs with an error: "
          f"{sum(1 for x in runs if x['findings'].get('model_kernel_disagree'))})")
    print(f"cgroup samples: {sum(x['samples'] for x in runs):,}  exact: {sum(x['exact'] for x in runs):,}  "
          f"exact mismatches: {sum(x['exact_mismatch'] for x in runs):,}")
    if json_out:
        json_out.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
