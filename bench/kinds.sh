#!/usr/bin/env bash
# Benchmark: what reaching the nodes another way costs (issue 15), next to
# a plain 3-node lab (SSH as postgres, SQL through a forwarded socket):
#   --sudo     `lab.sh --sudo`: SSH as pgadmin, every command through
#              `sudo -n -u postgres`, SQL over a perl stdio bridge;
#   --docker   `lab.sh --runtime docker`: SSH as pgdocker, every command by
#              `docker exec` into the node's container, SQL over the same
#              bridge run by `docker exec`.
# Measured: the drift check `pgrepl plan --detailed-exitcode`, `pgrepl
# status` and a no-op `pgrepl apply --auto-approve` on converged labs.
#
# Usage: bench/kinds.sh --sudo|--docker [-n RUNS]    (as root; ~1-2 minutes)
#   (bench/sudo.sh and bench/docker.sh are the two)
#   -n RUNS   timed runs per measurement (default 20, env BENCH_RUNS)
#   env BENCH_K_PLAIN / BENCH_K_OTHER: lab numbers (default 102 and 103)
#
# Both labs are converged first. The runs alternate between the two labs
# (plain, other, plain, ...), so that load on the shared machine falls on
# both alike. SSH masters persist between runs, as in most real use; a
# second series with PGREPL_SSH_PERSIST=0 opens them cold every run. Labs
# are torn down on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

RUNS=${BENCH_RUNS:-20}
KP=${BENCH_K_PLAIN:-102}
KS=${BENCH_K_OTHER:-${BENCH_K_SUDO:-103}}
KIND=
while [ $# -gt 0 ]; do
	case $1 in
	--sudo) KIND=sudo; OPTS=(--sudo); shift ;;
	--docker) KIND=docker; OPTS=(--runtime docker); shift ;;
	-n) RUNS=${2:?-n needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "-n must be a positive number"
[ -n "$KIND" ] || bench_die "say --sudo or --docker (see --help)"

bench_init
bench_build
echo "== $(bench_env_line)" >&2
echo "== labs $KP (plain) and $KS (${OPTS[*]}): up" >&2
lab_up "$KP" 3
lab_up "$KS" 3 "${OPTS[@]}"
for k in "$KP" "$KS"; do
	in_lab "$k" "$PGREPL" apply --auto-approve -c "$(lab_conf "$k")" >"$BENCH_TMP/converge-$k.out" 2>&1 ||
		{ cat "$BENCH_TMP/converge-$k.out" >&2; bench_die "lab $k: apply failed"; }
	in_lab "$k" "$PGREPL" status -c "$(lab_conf "$k")" >/dev/null 2>&1 || bench_die "lab $k: not healthy after apply"
done

# series NAME EXPECTED_EXIT ARGS...: RUNS runs on each lab, alternating.
series() {
	local name=$1 want=$2 i k
	shift 2
	: >"$BENCH_TMP/$name-plain.times"
	: >"$BENCH_TMP/$name-$KIND.times"
	for i in $(seq 1 "$RUNS"); do
		timed_pgrepl "$KP" "$BENCH_TMP/$name-plain.times" "$@"
		timed_pgrepl "$KS" "$BENCH_TMP/$name-$KIND.times" "$@"
	done
	for k in plain "$KIND"; do
		local bad
		bad=$(failures "$BENCH_TMP/$name-$k.times" "$want")
		[ "$bad" = 0 ] || { cat "$BENCH_TMP/last.out" "$BENCH_TMP/last.err" >&2; bench_die "$name ($k): $bad runs exited otherwise than $want"; }
	done
}

series drift 0 plan --detailed-exitcode
series status 0 status
series noop 0 apply --auto-approve
export PGREPL_SSH_PERSIST=0
series drift-cold 0 plan --detailed-exitcode
series noop-cold 0 apply --auto-approve
unset PGREPL_SSH_PERSIST

printf '\n%-34s %8s %8s %8s %8s %8s\n' "seconds ($RUNS runs each)" min median p90 max "$KIND/plain"
for name in drift status noop drift-cold noop-cold; do
	read -r _ pmin pmed pp90 pmax _ < <(stats "$BENCH_TMP/$name-plain.times")
	read -r _ smin smed sp90 smax _ < <(stats "$BENCH_TMP/$name-$KIND.times")
	ratio=$(awk -v a="$smed" -v b="$pmed" 'BEGIN { printf "%.2fx", a / b }')
	printf '%-34s %8s %8s %8s %8s\n' "$name, plain" "$pmin" "$pmed" "$pp90" "$pmax"
	printf '%-34s %8s %8s %8s %8s %8s\n' "$name, $KIND" "$smin" "$smed" "$sp90" "$smax" "$ratio"
done
echo "(drift: plan --detailed-exitcode; status: status; noop: apply --auto-approve; -cold: PGREPL_SSH_PERSIST=0)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
