#!/usr/bin/env bash
# Benchmark: pgrepl's own overhead when it builds a cluster (issue 6: under
# 2 s; SPEC section 9: pg_basebackup + <= 0.3 s, standbys built in parallel).
#
# Usage: bench/converge.sh [-n ROUNDS]      (as root; ~1.5 minutes)
#   -n ROUNDS  rounds (default 3, env BENCH_ROUNDS; ~25 s each)
#   env BENCH_K / BENCH_K_RAW: lab numbers (default 102 and 103)
#   env BENCH_SSH_OPTS: extra ssh options for pgrepl (an experiment; see status.sh)
#
# Each round:
#  1. a fresh 3-node lab K (node1 primary with data, node2/3 empty):
#     `pgrepl apply --auto-approve` timed from start to exit (converged, the
#     final plan empty), its output time-stamped line by line to split the
#     time into phases;
#  2. a fresh 3-node lab K_RAW, replication set up by hand (a REPLICATION
#     role, an hba line, two slots), then `pg_basebackup -X stream
#     --checkpoint=fast -S SLOT` (pgrepl's own flags) run by hand on node2,
#     then on node3 (sequentially), then both again at once into fresh
#     directories (the way pgrepl runs them);
#  3. a fresh lab K again: an untimed `apply --target node1 --target
#     role.replicator --target role.pgrepl_rewind` configures the primary
#     (hba, roles, GUCs, slots, restart), then the timed apply only adds the
#     two standbys (SPEC section 9's "add one standby" case).
# pgrepl's overhead = converge time - max(single raw base backup), since
# pgrepl builds both standbys in parallel; also shown against the raw
# parallel pair and the sum of the raw times. Labs are torn down on exit,
# also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
K=${BENCH_K:-102}
KR=${BENCH_K_RAW:-103}
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n must be a positive number"

bench_init
bench_build
echo "== $(bench_env_line)" >&2
t0=$(now)

# Prefixes each line with the time it was read (EPOCHREALTIME: no fork per line).
stamp() {
	local line
	while IFS= read -r line; do
		printf '%s\t%s\n' "$EPOCHREALTIME" "$line"
	done
}

# apply_round R NAME [TARGET...]: fresh lab K; with TARGETs, an untimed
# `apply --target` first (the primary configured, no standby yet); then the
# timed apply. Appends to NAME.rows:
# "R WALL MAX_PGREPL_BB GATHER_PLAN LOCK PRIMARY BB START FOLLOWUP FINAL"
apply_round() {
	local r=$1 name=$2 s e rc t log="$BENCH_TMP/$2-$1.log" pre=()
	shift 2
	for t in "$@"; do pre+=(--target "$t"); done
	lab_up "$K" 3
	# shellcheck disable=SC1090
	. "/var/tmp/pgrepl-lab/$K/env"
	if [ ${#pre[@]} -gt 0 ]; then
		"$PGREPL" apply --auto-approve "${pre[@]}" -c "$(lab_conf "$K")" >"$BENCH_TMP/pre.log" 2>&1 || {
			cat "$BENCH_TMP/pre.log" >&2
			bench_die "round $r: pgrepl apply ${pre[*]} failed"
		}
	fi
	s=$(now)
	set +e
	"$PGREPL" apply --auto-approve -c "$(lab_conf "$K")" 2>&1 | stamp >"$log"
	rc=${PIPESTATUS[0]}
	set -e
	e=$(now)
	if [ "$rc" != 0 ] || ! grep -q 'A fresh plan shows no changes' "$log"; then
		cut -f2- "$log" >&2
		bench_die "round $r: pgrepl apply exited $rc"
	fi
	# Healthy, streaming standbys (checked after the timing).
	"$PGREPL" status -c "$(lab_conf "$K")" >"$BENCH_TMP/status.txt" 2>&1 || {
		cat "$BENCH_TMP/status.txt" >&2
		bench_die "round $r: not healthy after apply"
	}
	lab_down "$K"
	awk -F'\t' -v r="$r" -v s="$s" -v wall="$(elapsed "$s" "$e")" '
		function set_first(name, t) { if (!(name in T)) T[name] = t }
		{ t = $1 - s; l = $2 }
		l ~ /^pgrepl will perform/ { set_first("plan", t) }
		l ~ /^node[0-9]+: [-+~] .*\.\.\.$/ { set_first("first_step", t) }
		l ~ /\.standby\.\.\.$/ { set_first("bb_start", t) }
		l ~ /\.standby done in/ { T["bb_end"] = t; if (match(l, /base backup of [^ ]+ in [0-9.]+s/)) { x = substr(l, RSTART, RLENGTH); sub(/.* in /, "", x); sub(/s$/, "", x); if (x + 0 > bb) bb = x + 0 } }
		l ~ /\.service done in .*streaming/ { T["stream"] = t }
		l ~ / done in [0-9.]+s/ { T["last_done"] = t }
		function d(a, b) { return ((a in T) && (b in T)) ? sprintf("%.3f", T[b] - T[a]) : "-" }
		END {
			T["start"] = 0; T["end"] = wall
			printf "%s %.3f %.3f %s %s %s %s %s %s %s\n", r, wall, bb,
				d("start", "plan"), d("plan", "first_step"), d("first_step", "bb_start"),
				d("bb_start", "bb_end"), d("bb_end", "stream"), d("stream", "last_done"), d("last_done", "end")
		}' "$log" >>"$BENCH_TMP/$name.rows"
}

# On node $1 of lab KR: pg_basebackup through slot node$1 into $2; prints its
# wall time (measured on the node, around pg_basebackup alone).
# shellcheck disable=SC2016
RAW_BB='set -e
h=$1 d=$2 slot=$3
printf "*:*:*:rep:handmade\n" > "$HOME/.pgpass"; chmod 600 "$HOME/.pgpass"
rm -rf "$d"
s=$(date +%s.%N)
pg_basebackup -h "$h" -p 5432 -U rep -D "$d" -X stream --checkpoint=fast --no-password --progress -S "$slot" 2>"$HOME/bb.log" || { cat "$HOME/bb.log" >&2; exit 1; }
e=$(date +%s.%N)
awk -v a="$s" -v b="$e" "BEGIN { printf \"%.3f\n\", b - a }"'

raw_bb() {
	local node=$1 major
	major=$(cat "/var/tmp/pgrepl-lab/$KR/major")
	bash "$BENCH_LAB" --k "$KR" exec "$node" sh -c "$RAW_BB" sh "198.18.$KR.11" "/var/lib/postgresql/$major/main" "node$node"
}

# raw_round R: appends "R BB2 BB3 PAIR_WALL PAIR_BB2 PAIR_BB3" to raw.rows.
raw_round() {
	local r=$1 b2 b3 s e p2 p3
	lab_up "$KR" 3
	bash "$BENCH_LAB" --k "$KR" sql 1 "CREATE ROLE rep LOGIN REPLICATION PASSWORD 'handmade'" >/dev/null
	bash "$BENCH_LAB" --k "$KR" exec 1 sh -c 'echo "host replication rep $1 scram-sha-256" >> "$2/pg_hba.conf"' \
		sh "198.18.$KR.0/24" "/var/lib/postgresql/$(cat "/var/tmp/pgrepl-lab/$KR/major")/main"
	bash "$BENCH_LAB" --k "$KR" sql 1 "SELECT pg_reload_conf(), pg_create_physical_replication_slot('node2'), pg_create_physical_replication_slot('node3')" >/dev/null
	b2=$(raw_bb 2)
	b3=$(raw_bb 3)
	s=$(now)
	raw_bb 2 >"$BENCH_TMP/p2" &
	local pid2=$!
	raw_bb 3 >"$BENCH_TMP/p3" || bench_die "round $r: parallel raw base backup on node3 failed"
	wait "$pid2" || bench_die "round $r: parallel raw base backup on node2 failed"
	e=$(now)
	p2=$(cat "$BENCH_TMP/p2")
	p3=$(cat "$BENCH_TMP/p3")
	lab_down "$KR"
	echo "$r $b2 $b3 $(elapsed "$s" "$e") $p2 $p3" >>"$BENCH_TMP/raw.rows"
}

: >"$BENCH_TMP/converge.rows"
: >"$BENCH_TMP/add.rows"
: >"$BENCH_TMP/raw.rows"
for ((r = 1; r <= ROUNDS; r++)); do
	echo "== round $r/$ROUNDS: pgrepl apply on a fresh lab $K; raw pg_basebackup on a fresh lab $KR; pgrepl adding 2 standbys on a fresh lab $K" >&2
	apply_round "$r" converge
	raw_round "$r"
	apply_round "$r" add node1 role.replicator role.pgrepl_rewind
done
total=$(elapsed "$t0" "$(now)")

# ------------------------------------------------------------------ report
# R.rows: 1 r, 2 wall, 3 pgrepl_bb, 4 gather+plan, 5 lock, 6 primary, 7 bbs,
# 8 start+stream, 9 follow-up, 10 final, 11 raw2, 12 raw3, 13 pair wall, 14 pair2, 15 pair3
rows() { join -j1 <(sort -k1,1 "$BENCH_TMP/$1.rows") <(sort -k1,1 "$BENCH_TMP/raw.rows") | sort -n -k1,1 >"$BENCH_TMP/all.rows"; }
col() { awk -v c="$1" '{ print $c }' "$BENCH_TMP/all.rows" >"$BENCH_TMP/col"; stats "$BENCH_TMP/col"; }
derived() { awk "{ print $1 }" "$BENCH_TMP/all.rows" >"$BENCH_TMP/col"; stats "$BENCH_TMP/col"; }
line() { # label "n min med p90 max mean" [target verdict-op limit]
	local n min med p90 max mean v=-
	read -r n min med p90 max mean <<<"$2"
	[ -n "${4:-}" ] && v=$(verdict "$med" "$4" "$5")
	printf '%-54s %7s %7s %7s  %-10s %s\n' "$1" "$min" "$med" "$max" "${3:-}" "$v"
}
header() { printf '%-54s %7s %7s %7s  %-10s %s\n' "$1" min median max target verdict; }
MAXRAW='($11 > $12 ? $11 : $12)'

section() { # name title
	rows "$1"
	echo
	echo "$2"
	header "seconds (wall)"
	line "pgrepl apply (start to exit, final plan empty)" "$(col 2)"
	line "  pg_basebackup inside pgrepl (slowest standby)" "$(col 3)"
	line "pgrepl overhead = apply - max(single raw base backup)" "$(derived "\$2 - $MAXRAW")" "< 2 s" "<" 2
	line "  same, against the SPEC target" "$(derived "\$2 - $MAXRAW")" "<= 0.3 s" "<=" 0.3
	line "apply - raw pair run at once (same work, parallel)" "$(derived '$2 - $13')" "<= 0.3 s" "<=" 0.3
	line "apply - sum of the raw base backups" "$(derived '$2 - $11 - $12')"
	line "apply - pg_basebackup inside pgrepl (same run)" "$(derived '$2 - $3')" "< 2 s" "<" 2
	line "  same, against the SPEC target" "$(derived '$2 - $3')" "<= 0.3 s" "<=" 0.3
	echo "  where the time goes (from pgrepl's time-stamped output):"
	line "  gather + plan (SSH connect, read every node)" "$(col 4)"
	line "  lock" "$(col 5)"
	line "  primary steps (hba, roles, GUCs, slots, restart)" "$(col 6)"
	line "  base backups (both standbys, in parallel)" "$(col 7)"
	line "  recovery settings + start + wait for streaming" "$(col 8)"
	line "  re-gather + follow-up round (standby hba, reload)" "$(col 9)"
	line "  final re-gather (plan must be empty) + exit" "$(col 10)"
	echo "  per round: r apply pgrepl_bb | gather lock primary bbs start follow final"
	awk '{ printf "    %s  %s %s | %s %s %s %s %s %s %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$BENCH_TMP/all.rows"
}

echo
echo "pgrepl apply vs raw pg_basebackup on 3-node labs, $ROUNDS rounds ($(bench_env_line))"
rows converge
header "raw pg_basebackup by hand (seconds, wall, on the node)"
line "node2 alone (pays the primary's checkpoint)" "$(col 11)"
line "node3 alone, right after" "$(col 12)"
line "max of the two single base backups" "$(derived "$MAXRAW")"
line "sum of the two single base backups" "$(derived '$11 + $12')"
line "both at once, wall" "$(col 13)"
echo "  per round: r node2 node3 | at once: wall node2 node3"
awk '{ printf "    %s  %s %s | %s %s %s\n", $1, $11, $12, $13, $14, $15 }' "$BENCH_TMP/all.rows"
section converge "1. converge a fresh lab: primary + 2 empty nodes -> 2 streaming standbys (issue 6)"
section add "2. add 2 standbys to a primary pgrepl already configured (SPEC 9 'add one standby')"
echo
echo "verdicts compare the median. Raw and pgrepl base backups run on different labs at different"
echo "moments: on a busy host their difference is noisy (it can even be negative); the"
echo "'apply - pg_basebackup inside pgrepl' line compares within one run. Whole script: ${total}s."
