#!/usr/bin/env bash
# Run every mmtrace benchmark and write benchmarks/RESULTS.md.
#
#   sudo benchmarks/run_all.sh [--rounds N] [--quick] [-o FILE]
#
#   --rounds N   interleaved rounds per tool in overhead.py (default 5)
#   --quick      a smoke run (2 rounds, smaller workloads, short loss steps): ~2 min
#   -o FILE      where to write the markdown (default benchmarks/RESULTS.md); the raw
#                figures (every run) go to results/*.json next to it
#
# Runs, in order: overhead.py (mmtrace vs bpftrace vs perf vs untraced),
# loss.py (highest zero-loss event rate), analysis.py (load/replay throughput,
# peak RSS), then report.py renders the JSON they wrote into RESULTS.md.
# A part that fails is reported in RESULTS.md and the others still run.
# bpftrace and perf are optional (Debian: apt-get install bpftrace linux-perf).
# About 6-8 minutes on 2 cores with the defaults.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PY=${PYTHON:-$REPO/.venv/bin/python}
OUTPUT=$HERE/RESULTS.md
ROUNDS=5
QUICK=0

while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	-o|--output) OUTPUT=$2; shift 2 ;;
	-h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run_all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
done

if [ "$(id -u)" != 0 ]; then
	echo "run_all.sh: tracing needs root: sudo $0" >&2
	exit 1
fi
if [ ! -x "$PY" ]; then
	echo "run_all.sh: $PY not found: run ./setup.sh first (or set PYTHON=)" >&2
	exit 1
fi
for tool in bpftrace perf; do
	command -v $tool >/dev/null || echo "NOTE: $tool is not installed: its rows will say skipped (Debian: apt-get install ${tool/perf/linux-perf})" >&2
done

RAW=$(dirname "$OUTPUT")/results	# raw JSON of every script, kept: report.py re-renders from it
mkdir -p "$RAW"
rm -f "$RAW"/overhead.json "$RAW"/progcost.json "$RAW"/loss.json "$RAW"/analysis.json

OV_ARGS=(--rounds "$ROUNDS" --tools untraced,mmtrace,mmtrace-empty-programs,mmtrace-bystander,mmtrace-cold,bpftrace,perf
	--workloads mmloop,forkexec,getppid,startup,idle)
LOSS_ARGS=()
AN_ARGS=()
if [ $QUICK = 1 ]; then
	[ "$ROUNDS" = 5 ] && OV_ARGS[1]=2
	OV_ARGS+=(--mmloop-iters 20000 --forkexec-iters 200 --getppid-iters 200000)
	LOSS_ARGS=(--seconds 1 --rates 10000,40000,max)
	AN_ARGS=(--repeat 1)
fi

start=$(date +%s)
status=0
echo "== overhead.py ${OV_ARGS[*]}" >&2
"$PY" "$HERE/overhead.py" "${OV_ARGS[@]}" --json "$RAW/overhead.json" || status=1
echo "== progcost.py" >&2
"$PY" "$HERE/progcost.py" --json "$RAW/progcost.json" || status=1
echo "== loss.py ${LOSS_ARGS[*]}" >&2
"$PY" "$HERE/loss.py" "${LOSS_ARGS[@]}" --json "$RAW/loss.json" || status=1
echo "== analysis.py ${AN_ARGS[*]}" >&2
"$PY" "$HERE/analysis.py" "${AN_ARGS[@]}" --json "$RAW/analysis.json" || status=1

cmd="sudo benchmarks/run_all.sh"
[ $QUICK = 1 ] && cmd+=" --quick"
[ "$ROUNDS" != 5 ] && cmd+=" --rounds $ROUNDS"
"$PY" "$HERE/report.py" --overhead "$RAW/overhead.json" --progcost "$RAW/progcost.json" --loss "$RAW/loss.json" \
	--analysis "$RAW/analysis.json" --command "$cmd" -o "$OUTPUT" \
	--readme "$HERE/../README.md" >/dev/null || status=1
# Under sudo, the results belong to the invoking user.
if [ -n "${SUDO_UID:-}" ] && [ -n "${SUDO_GID:-}" ]; then
	chown -R "$SUDO_UID:$SUDO_GID" "$OUTPUT" "$RAW" 2>/dev/null || true
fi
echo "== wrote $OUTPUT in $(( $(date +%s) - start )) s" >&2
exit $status
