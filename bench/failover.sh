#!/usr/bin/env bash
# Benchmark: failover with the old primary cut (`apply --force`). An
# unreachable node should cost at most one connect_timeout per apply, so a
# failover finishes within connect_timeout + 1 s.
#
# Usage: bench/failover.sh [-n ROUNDS] [-t "10s 2s"]   (as root; ~2 minutes)
#   -n ROUNDS    failovers per connect_timeout (default 3, env BENCH_ROUNDS)
#   -t TIMEOUTS  the connect_timeout values to measure, space-separated
#                (default "10s 2s": pgrepl's default and a short one; env
#                BENCH_TIMEOUTS)
#   env BENCH_K_FO: lab number (default 110; must be in 110..119)
#   env PGREPL_SSH_PERSIST=0: cold SSH connections every run (by default
#       the masters are reused; see below)
#   env BENCH_LOGS=DIR: keep pgrepl's time-stamped output of every timed
#       apply (and of the restores) in DIR (also on failure)
#
# One 3-node lab, converged with node1 primary. `connect_timeout` is written
# into the lab's cluster file (the lab writes "3s"). Per round:
#  1. `pgrepl status`, untimed: it leaves the SSH masters warm, as a cron
#     loop or an operator's last look would (masters persist 60 s idle);
#  2. `lab.sh cut node1` (its link goes down: established connections hang,
#     new ones time out), `primary = "node2"` in the cluster file;
#  3. timed: `pgrepl apply --auto-approve --force` (output time-stamped);
#     it must exit 0 and node2 must be a primary afterwards;
#  4. restore, untimed: heal node1, wait for its sshd, `apply` (re-bases
#     node1 onto node2), `primary = "node1"` and `apply` (switchover back);
#     node2 and node3 must stream from node1 again.
# The report gives min/median/max of the whole apply per connect_timeout
# against its target (timeout + 1 s), and where the time went: gather + plan
# (the cut node's connect is in there), the promotion step, and the rest.
# The lab is torn down on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
TIMEOUTS=${BENCH_TIMEOUTS:-10s 2s}
K=${BENCH_K_FO:-110}
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	-t) TIMEOUTS=${2:?-t needs timeouts, e.g. "10s 2s"}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n must be a positive number"
for t in $TIMEOUTS; do
	[[ $t =~ ^[1-9][0-9]*s$ ]] || bench_die "timeouts are whole seconds like 10s (got $t)"
done
[[ $K =~ ^[0-9]+$ ]] && [ "$K" -ge 110 ] && [ "$K" -le 119 ] || bench_die "BENCH_K_FO must be in 110..119 (got $K)"

bench_init
keep_logs() {
	[ -n "${BENCH_LOGS:-}" ] && [ -n "$BENCH_TMP" ] || return 0
	mkdir -p "$BENCH_LOGS"
	cp "$BENCH_TMP"/*.log "$BENCH_TMP"/*.rows "$BENCH_LOGS"/ 2>/dev/null || true
}
fo_cleanup() {
	keep_logs
	bench_cleanup
}
trap fo_cleanup EXIT

bench_build
echo "== $(bench_env_line)" >&2
t0=$(now)
: >"$BENCH_TMP/load"

stamp() {
	local line
	while IFS= read -r line; do
		printf '%s\t%s\n' "$EPOCHREALTIME" "$line"
	done
}

# stamped_pgrepl LOG ARGS...: pgrepl ARGS -c <the lab's file>, stdout and
# stderr time-stamped into LOG; sets S (start), E (end), RC.
stamped_pgrepl() {
	local log=$1
	shift
	cut -d' ' -f1 /proc/loadavg >>"$BENCH_TMP/load"
	# shellcheck disable=SC1090
	. "/var/tmp/pgrepl-lab/$K/env"
	S=$(now)
	set +e
	"$PGREPL" "$@" -c "$(lab_conf "$K")" 2>&1 | stamp >"$log"
	RC=${PIPESTATUS[0]}
	set -e
	E=$(now)
}

show_log() { cut -f2- "$1" >&2; }
set_primary() { sed -i "s/^primary = \".*\"\$/primary = \"$1\"/" "$(lab_conf "$K")"; }
set_timeout() {
	sed -i "s/^connect_timeout = \".*\"\$/connect_timeout = \"$1\"/" "$(lab_conf "$K")"
	grep -qx "connect_timeout = \"$1\"" "$(lab_conf "$K")" || bench_die "could not set connect_timeout = \"$1\""
}
addr() { echo "198.18.$K.$((10 + $1))"; }
sql() { bash "$BENCH_LAB" --k "$K" sql "$1" "$2"; }
reachable() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; }

wait_until() { # SECONDS WHAT CMD...: polls CMD every 50 ms
	local limit=$1 what=$2 end
	shift 2
	end=$(awk -v n="$(now)" -v l="$limit" 'BEGIN { printf "%.3f", n + l }')
	until "$@"; do
		awk -v n="$(now)" -v e="$end" 'BEGIN { exit !(n > e) }' && bench_die "timed out ($limit s) waiting for $what"
		sleep 0.05
	done
}

streams_from() { # NODE UPSTREAM_NODE
	[ "$(sql "$1" "SELECT sender_host || ':' || status FROM pg_stat_wal_receiver" 2>/dev/null)" = "$(addr "$2"):streaming" ]
}

# untimed_apply LOG WHAT: `apply --auto-approve` that must end converged.
untimed_apply() {
	stamped_pgrepl "$1" apply --auto-approve
	if [ "$RC" != 0 ] || ! grep -q 'A fresh plan shows no changes' "$1"; then
		show_log "$1"
		bench_die "$2: apply exited $RC"
	fi
}

echo "== lab $K (3 nodes): failover with node1 cut, connect_timeout ${TIMEOUTS// /, }; $ROUNDS rounds each" >&2
lab_up "$K" 3
untimed_apply "$BENCH_TMP/converge.log" "converge"
wait_until 20 "node2 and node3 to stream from node1" eval "streams_from 2 1 && streams_from 3 1"

for to in $TIMEOUTS; do
	set_timeout "$to"
	: >"$BENCH_TMP/fo-$to.rows"
	for ((r = 1; r <= ROUNDS; r++)); do
		log="$BENCH_TMP/fo-$to-$r.log"
		# Warm masters, as the last look before a failover leaves them.
		in_lab "$K" "$PGREPL" status -c "$(lab_conf "$K")" >"$BENCH_TMP/status.out" 2>&1 ||
			{ cat "$BENCH_TMP/status.out" >&2; bench_die "status before round $r failed"; }
		bash "$BENCH_LAB" --k "$K" cut 1 2>/dev/null
		set_primary node2
		stamped_pgrepl "$log" apply --auto-approve --force
		[ "$RC" = 0 ] || { show_log "$log"; bench_die "connect_timeout $to, round $r: apply --force exited $RC"; }
		[ "$(sql 2 "SELECT pg_is_in_recovery()")" = f ] || { show_log "$log"; bench_die "node2 was not promoted"; }
		awk -F'\t' -v s="$S" -v wall="$(elapsed "$S" "$E")" '
			{ t = $1 - s; l = $2 }
			l ~ /^pgrepl will perform/ && !("plan" in T) { T["plan"] = t }
			l ~ /: ~ cluster\.primary\.\.\.$/ && !("pr" in T) { T["pr"] = t }
			l ~ /cluster\.primary done in/ { T["prd"] = t }
			function d(a, b) { return ((a in T) && (b in T)) ? sprintf("%.3f", T[b] - T[a]) : "-" }
			END {
				T["start"] = 0; T["end"] = wall
				# wall gather_plan promote_step promote_done_to_exit
				printf "%.3f %s %s %s\n", wall, d("start", "plan"), d("pr", "prd"), d("prd", "end")
			}' "$log" >>"$BENCH_TMP/fo-$to.rows"
		echo "   connect_timeout $to, round $r: apply --force $(elapsed "$S" "$E")s" >&2
		# Restore: node1 back as the primary.
		bash "$BENCH_LAB" --k "$K" heal 1 2>/dev/null
		wait_until 20 "node1 to answer on port 22 after heal" reachable "$(addr 1)"
		untimed_apply "$BENCH_TMP/rebase-$to-$r.log" "re-base of node1 (round $r)"
		set_primary node1
		untimed_apply "$BENCH_TMP/back-$to-$r.log" "switchover back to node1 (round $r)"
		wait_until 20 "node2 and node3 to stream from node1" eval "streams_from 2 1 && streams_from 3 1"
	done
done
keep_logs
lab_down "$K"
total=$(elapsed "$t0" "$(now)")

# ------------------------------------------------------------------ report
col() { awk -v c="$2" '$c != "-" { print $c }' "$1" >"$BENCH_TMP/col"; stats "$BENCH_TMP/col"; }
line() { # label "n min med p90 max mean" [target verdict-op limit]
	local n min med p90 max mean v=-
	read -r n min med p90 max mean <<<"$2"
	[ -n "${4:-}" ] && [ "$n" != 0 ] && v=$(verdict "$max" "$4" "$5")
	printf '%-50s %3s %7s %7s %7s  %-9s %s\n' "$1" "$n" "$min" "$med" "$max" "${3:-}" "$v"
}
echo
echo "pgrepl failover, old primary cut ($(bench_env_line); SSH masters $([ "${PGREPL_SSH_PERSIST:-}" = 0 ] && echo 'cold: PGREPL_SSH_PERSIST=0' || echo 'warm: reused from a status run just before'))"
echo "load average (1 min) at the timed commands: $(sort -g "$BENCH_TMP/load" | head -1)..$(sort -g "$BENCH_TMP/load" | tail -1)"
echo
printf '%-50s %3s %7s %7s %7s  %-9s %s\n' "seconds (wall)" n min median max target verdict
for to in $TIMEOUTS; do
	R=$BENCH_TMP/fo-$to.rows
	lim=$((${to%s} + 1))
	line "connect_timeout $to: apply --force, whole command" "$(col "$R" 1)" "<= $lim s" "<=" "$lim"
	line "  gather + plan (the cut node's connect)" "$(col "$R" 2)"
	line "  cluster.primary step (promotion)" "$(col "$R" 3)"
	line "  promotion done -> exit (follow-up, final check)" "$(col "$R" 4)"
done
echo
echo "verdicts compare the MAX with connect_timeout + 1 s (every failover must finish within it)."
echo "Whole script: ${total}s (load at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
