#!/usr/bin/env bash
# Benchmark: wall time of `pgrepl status` on a converged 3-node and 10-node
# lab (issue 4: 3 nodes under 1 s, 10 nodes under 2x the 3-node time), and of
# the drift check `pgrepl plan --detailed-exitcode` and a no-op
# `pgrepl apply --auto-approve` on the converged 3-node lab (SPEC section 9:
# <= 0.25 s and <= 0.3 s).
#
# Usage: bench/status.sh [-n RUNS]          (as root; ~1 minute)
#   -n RUNS   timed runs per measurement (default 20, env BENCH_RUNS)
#   env BENCH_K3 / BENCH_K10: lab numbers (default 100 and 101)
#   env BENCH_SSH_OPTS: extra ssh options for pgrepl (an experiment), e.g.
#       BENCH_SSH_OPTS="-o KexAlgorithms=curve25519-sha256"
#
# Brings up labs K3 (3 nodes) and K10 (10 nodes), converges each with
# `pgrepl apply --auto-approve`, then times each command RUNS times in a row
# (no warm-up is discarded: every run opens its own SSH connections, as a
# user's would). Labs are torn down on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${BENCH_RUNS:-20}
K3=${BENCH_K3:-100}
K10=${BENCH_K10:-101}
while [ $# -gt 0 ]; do
	case $1 in
	-n) RUNS=${2:?-n needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "-n must be a positive number"

bench_init
bench_build
echo "== $(bench_env_line)" >&2

t0=$(now)
echo "== labs $K3 (3 nodes) and $K10 (10 nodes): up" >&2
lab_up "$K3" 3
lab_up "$K10" 10

# converge K: `pgrepl apply --auto-approve` until it succeeds (at most 8
# runs: a rerun continues from live state; on the 10-node lab parallel base
# backups exceed max_wal_senders = 10, see the notes); a failed run is reported.
CONVERGE_NOTES=()
converge() {
	local k=$1 s e try rc
	s=$(now)
	for try in 1 2 3 4 5 6 7 8; do
		rc=0
		in_lab "$k" "$PGREPL" apply --auto-approve -c "$(lab_conf "$k")" >"$BENCH_TMP/converge-$k.out" 2>"$BENCH_TMP/converge-$k.err" || rc=$?
		[ $rc = 0 ] && break
		CONVERGE_NOTES+=("lab $k: apply run $try exited $rc: $(grep -m1 -A2 '^error:' "$BENCH_TMP/converge-$k.err" | grep -v '^waiting for checkpoint' | tr '\n' ' ' | cut -c1-300)")
		echo "   ${CONVERGE_NOTES[-1]}" >&2
		[ $try = 8 ] && { cat "$BENCH_TMP/converge-$k.out" "$BENCH_TMP/converge-$k.err" >&2; bench_die "lab $k: pgrepl apply failed 8 times"; }
	done
	e=$(now)
	echo "== lab $k converged in $(elapsed "$s" "$e")s ($try apply run(s)): $(tail -1 "$BENCH_TMP/converge-$k.out")" >&2
	# Streaming standbys, every node healthy, before anything is timed.
	in_lab "$k" "$PGREPL" status -c "$(lab_conf "$k")" >"$BENCH_TMP/status-$k.txt" 2>&1 || {
		cat "$BENCH_TMP/status-$k.txt" >&2
		bench_die "lab $k: not healthy after apply"
	}
}
converge "$K3"
converge "$K10"

# Busy CPU time of the whole machine so far, in clock ticks (the lab's
# sshd and PostgreSQL processes run on the same cores as pgrepl).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
TICK_MS=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN { print 1000 / hz }')
CORES=$(nproc)

# measure NAME K EXPECTED_EXIT ARGS...
measure() {
	local name=$1 k=$2 want=$3 i f b0
	shift 3
	f="$BENCH_TMP/$name.times"
	: >"$f"
	echo "== $name: $RUNS x pgrepl $*" >&2
	b0=$(busy_ticks)
	for ((i = 0; i < RUNS; i++)); do
		timed_pgrepl "$k" "$f" "$@"
	done
	# CPU milliseconds per run, all processes of the machine together.
	awk -v a="$b0" -v b="$(busy_ticks)" -v t="$TICK_MS" -v n="$RUNS" 'BEGIN { printf "%.0f", (b - a) * t / n }' >"$BENCH_TMP/$name.cpu"
	if [ "$(failures "$f" "$want")" != 0 ]; then
		echo "   $(failures "$f" "$want") of $RUNS runs did not exit $want; last run:" >&2
		sed 's/^/   | /' "$BENCH_TMP/last.out" "$BENCH_TMP/last.err" >&2
	fi
}
measure status3 "$K3" 0 status
measure status10 "$K10" 0 status
# Concurrency, read off one run: the per-node gathering times overlap
# N-fold when all nodes are read at once (1.0 would be one after another).
s=$(now)
in_lab "$K10" "$PGREPL" status --json -c "$(lab_conf "$K10")" >"$BENCH_TMP/status10.json" 2>/dev/null || true
wall_ms=$(awk -v a="$s" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
overlap=$(grep -o '"gather_ms": *[0-9]*' "$BENCH_TMP/status10.json" | awk -F: -v w="$wall_ms" '{ s += $2 } END { if (NR && w > 0) printf "%.1f", s / w; else print "?" }')
measure plan3 "$K3" 0 plan --detailed-exitcode
measure noop3 "$K3" 0 apply --auto-approve
grep -q '^No changes' "$BENCH_TMP/last.out" || {
	echo "   the last no-op apply did not say 'No changes':" >&2
	sed 's/^/   | /' "$BENCH_TMP/last.out" >&2
}
measure plan10 "$K10" 0 plan --detailed-exitcode
measure noop10 "$K10" 0 apply --auto-approve

lab_down "$K3"
lab_down "$K10"
total=$(elapsed "$t0" "$(now)")

# ------------------------------------------------------------------ report
row() { # name label target-op target-limit target-text
	local s n min med p90 max mean fail v=-
	s=$(stats "$BENCH_TMP/$1.times")
	read -r n min med p90 max mean <<<"$s"
	fail=$(failures "$BENCH_TMP/$1.times")
	[ -n "$3" ] && v=$(verdict "$med" "$3" "$4")
	printf '%-34s %4s %7s %7s %7s %7s %5s  %-10s %s\n' "$2" "$n" "$min" "$med" "$p90" "$max" "$fail" "$5" "$v"
}
med_of() { stats "$BENCH_TMP/$1.times" | awk '{ print $3 }'; }
min_of() { stats "$BENCH_TMP/$1.times" | awk '{ print $2 }'; }

echo
echo "pgrepl status / plan / no-op apply on converged labs ($(bench_env_line))"
printf '%-34s %4s %7s %7s %7s %7s %5s  %-10s %s\n' "seconds (wall)" runs min median p90 max fails target verdict
row status3 "status, 3 nodes" "<" 1 "< 1 s"
row status10 "status, 10 nodes" "" "" ""
ratio=$(awk -v a="$(med_of status10)" -v b="$(med_of status3)" 'BEGIN { printf "%.2f", a / b }')
ratio_min=$(awk -v a="$(min_of status10)" -v b="$(min_of status3)" 'BEGIN { printf "%.2f", a / b }')
printf '%-34s %4s %7s %7s %7s %7s %5s  %-10s %s\n' "status, 10/3 ratio (min; median)" "" "$ratio_min" "$ratio" "" "" "" "< 2x" "$(verdict "$ratio" "<" 2)"
cpu3=$(cat "$BENCH_TMP/status3.cpu")
cpu10=$(cat "$BENCH_TMP/status10.cpu")
echo "  machine CPU per status run: 3 nodes ${cpu3} ms, 10 nodes ${cpu10} ms on ${CORES} cores,"
echo "  so 10 nodes cannot take less than $(awk -v c="$cpu10" -v n="$CORES" 'BEGIN { printf "%.3f", c / n / 1000 }') s here (CPU floor);"
echo "  per-node gathering overlaps ${overlap}x in one 10-node run (sum of per-node times / wall; 1.0 = serial)"
row plan3 "plan --detailed-exitcode, 3 nodes" "<=" 0.25 "<= 0.25 s"
row noop3 "no-op apply, 3 nodes" "<=" 0.3 "<= 0.3 s"
printf '%-34s %4s %7s %7s %7s %7s %5s  %-10s %s\n' "  (issue 6 target)" "" "" "" "" "" "" "< 1 s" "$(verdict "$(med_of noop3)" "<" 1)"
row plan10 "plan --detailed-exitcode, 10 nodes" "" "" ""
row noop10 "no-op apply, 10 nodes" "" "" ""
for note in "${CONVERGE_NOTES[@]}"; do echo "note: $note"; done
echo "verdicts compare the median; fails = runs whose exit code was not 0. Whole script: ${total}s."
