#!/usr/bin/env bash
# Regenerates the checked-in golden trace (root): the bundled demo workload,
# recorded by mmtrace's own recorder, with its /proc/self/maps checkpoints.
#   sudo tests/golden/make_golden.sh && .venv/bin/python tests/golden/make_golden.py
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/golden/data
rm -rf "$out/demo.trace" "$out/demo.checkpoints"
mkdir -p "$out/demo.checkpoints"
echo 8 > /proc/sys/vm/nr_hugepages
demo=$(.venv/bin/python -c 'from mmtrace.workloads import build; print(build("demo"))')
.venv/bin/mmtrace record -q -o "$out/demo.trace" -- "$demo" --checkpoints "$out/demo.checkpoints"
