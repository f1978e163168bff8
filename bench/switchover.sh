#!/usr/bin/env bash
# Benchmark: switchover and re-base (issue 7; SPEC section 9: switchover
# write-unavailability with a 50 writes/s client <= 0.7 s, whole switchover
# command <= 2.5 s, re-base of a diverged old primary with pg_rewind <= 1 s).
#
# Usage: bench/switchover.sh [-n ROUNDS] [-r REBASES]   (as root; ~3 minutes)
#   -n ROUNDS   switchover round trips 1->2->1 (default 3, env BENCH_ROUNDS)
#   -r REBASES  re-bases per method, pg_rewind and base backup (default 2,
#               env BENCH_REBASES; ~25 s each on a 1 GB database)
#   env BENCH_K_SW / BENCH_K_RW / BENCH_K_BB: lab numbers (default 104, 105,
#       106; each must be in 104..109)
#   env BENCH_SCALE: pgbench scale of the re-base labs (default 70: ~1.05 GB)
#   env BENCH_RATE: writes per second of the client (default 50)
#   env BENCH_PYTHON: a python3 that can `import psycopg` (see below)
#   env BENCH_SSH_OPTS: extra ssh options for pgrepl (an experiment; see status.sh)
#   env PGREPL_SSH_PERSIST=0: pgrepl opens cold SSH connections every run
#       (by default it reuses its SSH masters for 60 s, so the timed commands
#       here, which follow another pgrepl run on the same lab within seconds,
#       find them warm; the report says which)
#   env BENCH_LOGS=DIR: keep pgrepl's time-stamped output, the client's
#       per-try log and the nodes' PostgreSQL logs in DIR (also on failure)
#
# The write client is Python with psycopg 3. When no BENCH_PYTHON is given
# and python3 cannot import psycopg, the script makes a virtualenv in
# /var/tmp/pgrepl-bench-venv and installs `psycopg[binary]` from PyPI into
# it (once; kept for later runs; ~10 s).
#
# 1. Switchover (lab BENCH_K_SW, 3 nodes): a role `bench` with a random
#    password is created on node1 and an [[hba]] rule `host all bench
#    198.18.K.1/32 scram-sha-256` (the host's bridge address) is added to the
#    lab's cluster file before the first converge, so every node has it.
#    Per switchover a client on the host writes BENCH_RATE single-row
#    INSERTs per second over one persistent connection per node (node1 and
#    node2), trying the node that last accepted writes first and, on failure,
#    the other one in the same tick; every try is logged with its wall-clock
#    start and end and whether it committed. `primary` is edited in the
#    cluster file and `pgrepl apply --auto-approve` is timed (its output
#    time-stamped line by line). Unavailability = commit time of the first
#    write on the new primary - commit time of the last write on the old one.
#    Every committed id must be on the new primary afterwards. 1->2 then 2->1,
#    ROUNDS times.
# 2. Re-base (labs BENCH_K_RW, then BENCH_K_BB with `wal_log_hints = false`
#    written to the cluster file before the first converge; 3 nodes): node1
#    gets `pgbench -i -s BENCH_SCALE` (>= 1 GB checked with
#    pg_database_size) before the converge. Per re-base: cut node1, set
#    primary node2, `apply --auto-approve --force` (failover; timed too, for
#    information), 1000 rows written on the cut-off node1 (split brain),
#    heal, wait until node1's sshd answers, `sync` (so that the host's dirty
#    page cache, e.g. the lab's own 1 GB just written, is not flushed inside
#    pg_rewind's fsync of the data directory), an untimed `pgrepl plan` (it
#    must show the re-base and its method), then the timed apply that
#    re-bases node1 (checked: pg_rewind resp. a base backup, split-brain rows
#    gone, rows equal node2's, a fresh plan empty). Then an untimed
#    switchover back to node1 (its time is printed too) for the next re-base.
# Labs are torn down on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
REBASES=${BENCH_REBASES:-2}
K_SW=${BENCH_K_SW:-104}
K_RW=${BENCH_K_RW:-105}
K_BB=${BENCH_K_BB:-106}
SCALE=${BENCH_SCALE:-70}
RATE=${BENCH_RATE:-50}
VENV=/var/tmp/pgrepl-bench-venv
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	-r) REBASES=${2:?-r needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n must be a positive number"
[[ $REBASES =~ ^[0-9]+$ ]] || bench_die "-r must be a number"
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_SCALE must be a positive number"
[[ $RATE =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_RATE must be a positive number"
for k in "$K_SW" "$K_RW" "$K_BB"; do
	[[ $k =~ ^[0-9]+$ ]] && [ "$k" -ge 104 ] && [ "$k" -le 109 ] || bench_die "lab numbers must be in 104..109 (got $k)"
done
[ "$K_SW" != "$K_RW" ] && [ "$K_SW" != "$K_BB" ] && [ "$K_RW" != "$K_BB" ] || bench_die "the three lab numbers must differ"

bench_init
WRITER_PID=
# Stops the write client (if any), then lib.sh's cleanup (labs down, tmp gone).
_rc() { return "$1"; }
sw_cleanup() {
	local rc=$?
	if [ -n "$WRITER_PID" ]; then
		kill -TERM "$WRITER_PID" 2>/dev/null || true
		wait "$WRITER_PID" 2>/dev/null || true
	fi
	keep_logs
	_rc "$rc" || bench_cleanup
	bench_cleanup
}
# keep_logs [K]: with BENCH_LOGS, copies this run's logs (and lab K's
# PostgreSQL logs) there.
keep_logs() {
	[ -n "${BENCH_LOGS:-}" ] && [ -n "$BENCH_TMP" ] || return 0
	mkdir -p "$BENCH_LOGS"
	cp "$BENCH_TMP"/*.log "$BENCH_TMP"/*.writes "$BENCH_TMP"/*.rows "$BENCH_LOGS"/ 2>/dev/null || true
	local k i f
	for k in "${1:-}" "${BENCH_LABS_UP[@]}"; do
		[ -n "$k" ] || continue
		for i in 1 2 3; do
			for f in /var/tmp/pgrepl-lab/"$k"/node"$i"/home/*/pgrepl-postgresql.log; do
				[ -f "$f" ] && cp "$f" "$BENCH_LOGS/pg-lab$k-node$i.log"
			done
		done
	done
	return 0
}
trap sw_cleanup EXIT

# ------------------------------------------------------------ the client
python_ok() { "$1" -c 'import psycopg' 2>/dev/null; }
if [ -n "${BENCH_PYTHON:-}" ]; then
	python_ok "$BENCH_PYTHON" || bench_die "BENCH_PYTHON=$BENCH_PYTHON cannot import psycopg"
	PY=$BENCH_PYTHON
elif python_ok python3; then
	PY=python3
else
	if ! python_ok "$VENV/bin/python"; then
		echo "== installing psycopg[binary] from PyPI into $VENV" >&2
		python3 -m venv "$VENV" || bench_die "python3 -m venv $VENV failed"
		"$VENV/bin/pip" install --quiet 'psycopg[binary]' || bench_die "pip install psycopg[binary] failed"
	fi
	PY=$VENV/bin/python
fi

cat >"$BENCH_TMP/client.py" <<'PYEOF'
"""write HOSTS FIRST RATE TAG LOG: INSERTs at RATE/s until SIGTERM (or 120 s,
or the parent shell is gone); one line per try:
  TICK START END NODE OK ID ERROR   (wall-clock seconds; NODE 1-based)
check LOG FROM TO HOST TAG: prints
  UNAVAIL LAST_OLD FIRST_NEW COMMITTED FAILED_TICKS LOST OLD_AFTER_NEW
(LOST: committed ids missing on HOST, the new primary)."""
import os, signal, sys, time
import psycopg

def connect(host):
    return psycopg.connect(host=host, port=5432, user="bench", dbname="postgres",
                           autocommit=True, connect_timeout=2,
                           options="-c statement_timeout=2000")

def write(hosts, first, rate, tag, log):
    hosts = hosts.split(",")
    pref, period = int(first) - 1, 1.0 / float(rate)
    out = open(log, "w", buffering=1)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    parent, t_end = os.getppid(), time.monotonic() + 120
    conns = [None] * len(hosts)

    def attempt(i):
        c = conns[i]
        try:
            if c is None or c.closed:
                c = conns[i] = connect(hosts[i])
            row = c.execute("INSERT INTO lab_data(note) VALUES (%s) RETURNING id", (tag,)).fetchone()
            return 1, row[0], "-"
        except psycopg.Error as e:
            if c is not None and (c.closed or c.broken):
                c.close()
                conns[i] = None
            msg = (str(e).strip().splitlines() or [""])[0]
            return 0, "-", (type(e).__name__ + ":" + msg).replace(" ", "_")[:100]

    nxt = time.monotonic()
    while not stop[0] and os.getppid() == parent and time.monotonic() < t_end:
        tick = time.time()
        for i in (pref, 1 - pref):
            s = time.time()
            ok, rid, err = attempt(i)
            out.write(f"{tick:.6f} {s:.6f} {time.time():.6f} {i + 1} {ok} {rid} {err}\n")
            if ok:
                pref = i
                break
        nxt += period
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()

def check(log, old, new, host, tag):
    rows = [l.split(" ", 6) for l in open(log) if l.strip()]
    ok = [r for r in rows if r[4] == "1"]
    committed = [int(r[5]) for r in ok]
    last_old = max((float(r[2]) for r in ok if r[3] == old), default=None)
    first_new = min((float(r[2]) for r in ok if r[3] == new), default=None)
    failed_ticks = len({r[0] for r in rows} - {r[0] for r in ok})
    after = sum(1 for r in ok if r[3] == old and first_new is not None and float(r[2]) > first_new)
    with connect(host) as c:
        have = {r[0] for r in c.execute("SELECT id FROM lab_data WHERE note = %s", (tag,))}
    lost = [i for i in committed if i not in have]
    if lost:
        print(f"lost ids: {lost[:50]}", file=sys.stderr)
    if last_old is None or first_new is None:
        print(f"no committed write on node{old} or on node{new}", file=sys.stderr)
        print("- - - %d %d %d %d" % (len(committed), failed_ticks, len(lost), after))
        return
    print("%.3f %.6f %.6f %d %d %d %d" % (first_new - last_old, last_old, first_new,
                                          len(committed), failed_ticks, len(lost), after))

if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](*sys.argv[2:])
PYEOF

bench_build
echo "== $(bench_env_line)" >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(now)
: >"$BENCH_TMP/load"

# Prefixes each line with the time it was read (EPOCHREALTIME: no fork per line).
stamp() {
	local line
	while IFS= read -r line; do
		printf '%s\t%s\n' "$EPOCHREALTIME" "$line"
	done
}

# stamped_pgrepl K LOG ARGS...: pgrepl ARGS -c <lab K's file>, stdout and
# stderr time-stamped into LOG; sets S (start), E (end), RC.
stamped_pgrepl() {
	local k=$1 log=$2
	shift 2
	cut -d' ' -f1 /proc/loadavg >>"$BENCH_TMP/load"
	# shellcheck disable=SC1090
	. "/var/tmp/pgrepl-lab/$k/env"
	S=$(now)
	set +e
	"$PGREPL" "$@" -c "$(lab_conf "$k")" 2>&1 | stamp >"$log"
	RC=${PIPESTATUS[0]}
	set -e
	E=$(now)
}

show_log() { cut -f2- "$1" >&2; }

set_primary() { sed -i "s/^primary = \".*\"\$/primary = \"$2\"/" "$(lab_conf "$1")"; }

addr() { echo "198.18.$1.$((10 + $2))"; }

# converge K: untimed `apply --auto-approve` (must end with an empty plan).
converge() {
	local k=$1 rc=0
	in_lab "$k" "$PGREPL" apply --auto-approve -c "$(lab_conf "$k")" >"$BENCH_TMP/converge-$k.log" 2>&1 || rc=$?
	if [ $rc != 0 ] || ! grep -q 'A fresh plan shows no changes' "$BENCH_TMP/converge-$k.log"; then
		cat "$BENCH_TMP/converge-$k.log" >&2
		bench_die "lab $k: converge failed (exit $rc)"
	fi
}

sql() { bash "$BENCH_LAB" --k "$1" sql "$2" "$3"; }

# wait_until SECONDS WHAT CMD...: polls CMD every 50 ms.
wait_until() {
	local limit=$1 what=$2 end
	shift 2
	end=$(awk -v n="$(now)" -v l="$limit" 'BEGIN { printf "%.3f", n + l }')
	until "$@"; do
		awk -v n="$(now)" -v e="$end" 'BEGIN { exit !(n > e) }' && bench_die "timed out ($limit s) waiting for $what"
		sleep 0.05
	done
}

streams_from() { # K NODE UPSTREAM_NODE
	[ "$(sql "$1" "$2" "SELECT sender_host || ':' || status FROM pg_stat_wal_receiver" 2>/dev/null)" = "$(addr "$1" "$3"):streaming" ]
}

# ------------------------------------------------------- 1. switchover
switchover_part() {
	local k=$K_SW pw r from to tag log wlog res
	echo "== lab $k (3 nodes): switchover under a $RATE writes/s client, $ROUNDS round trips" >&2
	lab_up "$k" 3
	pw=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')
	(umask 077 && printf '%s' "$pw" >"$BENCH_TMP/bench.pw")
	# The password goes through psql's stdin, never on a command line.
	printf "CREATE ROLE bench LOGIN PASSWORD '%s';\nGRANT SELECT, INSERT ON lab_data TO bench;\nGRANT USAGE ON SEQUENCE lab_data_id_seq TO bench;\n" "$pw" |
		bash "$BENCH_LAB" --k "$k" exec 1 psql -XAtq -v ON_ERROR_STOP=1 -d postgres >/dev/null ||
		bench_die "lab $k: creating role bench failed"
	cat >>"$(lab_conf "$k")" <<EOF

# bench/switchover.sh: the write client on the host.
[[hba]]
type = "host"
database = "all"
user = "bench"
address = "198.18.$k.1/32"
method = "scram-sha-256"
EOF
	converge "$k"
	: >"$BENCH_TMP/sw.rows"
	for ((r = 1; r <= ROUNDS; r++)); do
		for dir in "1 2" "2 1"; do
			read -r from to <<<"$dir"
			tag="bench-$r-$from$to"
			log="$BENCH_TMP/sw-$r-$from$to.log"
			wlog="$BENCH_TMP/sw-$r-$from$to.writes"
			PGPASSWORD=$pw "$PY" "$BENCH_TMP/client.py" write "$(addr "$k" 1),$(addr "$k" 2)" "$from" "$RATE" "$tag" "$wlog" &
			WRITER_PID=$!
			sleep 1
			set_primary "$k" "node$to"
			stamped_pgrepl "$k" "$log" apply --auto-approve
			sleep 0.5
			kill -TERM "$WRITER_PID"
			wait "$WRITER_PID" || bench_die "the write client failed"
			WRITER_PID=
			if [ "$RC" != 0 ] || ! grep -q 'A fresh plan shows no changes' "$log"; then
				show_log "$log"
				bench_die "switchover $from -> $to (round $r): apply exited $RC"
			fi
			grep -q 'pg_rewind:' "$log" && { show_log "$log"; bench_die "switchover $from -> $to used pg_rewind"; }
			[ "$(sql "$k" "$to" "SELECT pg_is_in_recovery()")" = f ] || bench_die "node$to is not primary after the switchover"
			res=$(PGPASSWORD=$pw "$PY" "$BENCH_TMP/client.py" check "$wlog" "$from" "$to" "$(addr "$k" "$to")" "$tag") ||
				bench_die "checking the writes failed"
			# res: unavail last_old first_new committed failed_ticks lost old_after_new
			read -r un lo fn ncom nfail nlost nafter <<<"$res"
			[ "$un" != - ] || bench_die "switchover $from -> $to: no committed write on one side (see above)"
			[ "$nlost" = 0 ] || bench_die "switchover $from -> $to (round $r): $nlost committed rows LOST"
			[ "$nafter" = 0 ] || bench_die "switchover $from -> $to (round $r): $nafter writes committed on the old primary after the new one took writes"
			wait_until 20 "node$from and node3 to stream from node$to" \
				eval "streams_from $k $from $to && streams_from $k 3 $to"
			awk -F'\t' -v r="$r" -v dir="$from$to" -v s="$S" -v wall="$(elapsed "$S" "$E")" \
				-v un="$un" -v lo="$lo" -v fn="$fn" -v ncom="$ncom" -v nfail="$nfail" '
				{ t = $1 - s; l = $2 }
				l ~ /^pgrepl will perform/ && !("plan" in T) { T["plan"] = t }
				l ~ /: ~ cluster\.primary\.\.\.$/ { T["sw"] = t }
				l ~ /cluster\.primary done in/ { T["swd"] = t; if (match(l, /promoted [0-9.]+s after/)) { x = substr(l, RSTART + 9, RLENGTH - 9); sub(/s after/, "", x); prom = x } }
				l ~ / done in [0-9.]+s/ { T["last"] = t }
				function d(a, b) { return ((a in T) && (b in T)) ? sprintf("%.3f", T[b] - T[a]) : "-" }
				END {
					T["start"] = 0; T["end"] = wall
					# r dir wall unavail gather_plan pre sw_step follow final committed failed_ticks
					# old_last_vs_step new_first_vs_step promoted_after
					printf "%s %s %.3f %s %s %s %s %s %s %s %s %s %s %s\n", r, dir, wall, un,
						d("start", "plan"), d("plan", "sw"), d("sw", "swd"), d("swd", "last"), d("last", "end"),
						ncom, nfail,
						("sw" in T) ? sprintf("%.3f", lo - s - T["sw"]) : "-",
						("sw" in T) ? sprintf("%.3f", fn - s - T["sw"]) : "-", prom == "" ? "-" : prom
				}' "$log" >>"$BENCH_TMP/sw.rows"
			echo "   round $r $from->$to: unavailability ${un}s, apply $(elapsed "$S" "$E")s, $ncom writes committed, none lost" >&2
		done
	done
	keep_logs "$k"
	lab_down "$k"
}

# ------------------------------------------------------------ 2. re-base
reachable() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; }

rebase_part() { # K METHOD(rewind|basebackup)
	local k=$1 method=$2 size r log flog blog want
	echo "== lab $k (3 nodes, pgbench scale $SCALE): re-base by $method, $REBASES times" >&2
	lab_up "$k" 3
	if [ "$method" = basebackup ]; then
		sed -i 's/^wal_log_hints = true$/wal_log_hints = false/' "$(lab_conf "$k")"
		grep -q '^wal_log_hints = false$' "$(lab_conf "$k")" || bench_die "lab $k: could not set wal_log_hints = false"
		# Data checksums serve pg_rewind too (initdb turns them on from 18).
		if [ "$(sql "$k" 1 "SHOW data_checksums")" = on ]; then
			bash "$BENCH_LAB" --k "$k" stop 1 >/dev/null
			bash "$BENCH_LAB" --k "$k" exec 1 sh -c 'exec pg_checksums --disable -D /var/lib/postgresql/*/main' >&2 ||
				bench_die "lab $k: pg_checksums --disable failed"
			bash "$BENCH_LAB" --k "$k" start 1 >/dev/null
		fi
	fi
	bash "$BENCH_LAB" --k "$k" exec 1 pgbench -i -q -s "$SCALE" postgres >"$BENCH_TMP/pgbench-$k.log" 2>&1 ||
		{ cat "$BENCH_TMP/pgbench-$k.log" >&2; bench_die "lab $k: pgbench -i failed"; }
	size=$(sql "$k" 1 "SELECT pg_database_size('postgres')")
	[ "$size" -ge 1073741824 ] || bench_die "lab $k: database is only $size bytes (< 1 GiB): raise BENCH_SCALE"
	echo "$size" >"$BENCH_TMP/size-$method"
	converge "$k"
	for ((r = 1; r <= REBASES; r++)); do
		flog="$BENCH_TMP/$method-$r-failover.log"
		log="$BENCH_TMP/$method-$r.log"
		blog="$BENCH_TMP/$method-$r-back.log"
		bash "$BENCH_LAB" --k "$k" cut 1 >/dev/null
		set_primary "$k" node2
		stamped_pgrepl "$k" "$flog" apply --auto-approve --force
		[ "$RC" = 0 ] || { show_log "$flog"; bench_die "lab $k: failover apply --force exited $RC"; }
		local fo_wall; fo_wall=$(elapsed "$S" "$E")
		[ "$(sql "$k" 2 "SELECT pg_is_in_recovery()")" = f ] || bench_die "lab $k: node2 not promoted"
		# Split brain: the cut-off node1 still takes writes.
		sql "$k" 1 "INSERT INTO lab_data(note) SELECT 'split brain' FROM generate_series(1, 1000)" >/dev/null
		sql "$k" 2 "INSERT INTO lab_data(note) VALUES ('on the new primary')" >/dev/null
		bash "$BENCH_LAB" --k "$k" heal 1 >/dev/null
		wait_until 20 "node1 to answer on port 22 after heal" reachable "$(addr "$k" 1)"
		local ss se; ss=$(now); sync; se=$(now)
		in_lab "$k" "$PGREPL" plan -c "$(lab_conf "$k")" >"$BENCH_TMP/plan.out" 2>&1 || true
		grep -q 'node1.timeline' "$BENCH_TMP/plan.out" || { cat "$BENCH_TMP/plan.out" >&2; bench_die "lab $k: the plan does not re-base node1"; }
		if [ "$method" = rewind ]; then
			grep -q 're-base by pg_rewind' "$BENCH_TMP/plan.out" || { cat "$BENCH_TMP/plan.out" >&2; bench_die "lab $k: the plan does not use pg_rewind"; }
		else
			grep -q 're-base by a fresh base backup' "$BENCH_TMP/plan.out" || { cat "$BENCH_TMP/plan.out" >&2; bench_die "lab $k: the plan does not use a base backup"; }
		fi
		stamped_pgrepl "$k" "$log" apply --auto-approve
		if [ "$RC" != 0 ] || ! grep -q 'A fresh plan shows no changes' "$log"; then
			show_log "$log"
			bench_die "lab $k: re-base apply exited $RC"
		fi
		if [ "$method" = rewind ]; then
			grep -q 're-based from node2 by pg_rewind;' "$log" || { show_log "$log"; bench_die "lab $k: node1 was not re-based by pg_rewind"; }
		else
			grep -q 're-based from node2 by base backup' "$log" || { show_log "$log"; bench_die "lab $k: node1 was not re-based by a base backup"; }
		fi
		local wall; wall=$(elapsed "$S" "$E")
		wait_until 20 "node1 to stream from node2" streams_from "$k" 1 2
		want=$(sql "$k" 2 "SELECT count(*) || ':' || max(id) FROM lab_data")
		# shellcheck disable=SC2016
		wait_until 20 "node1's rows to equal node2's" eval '[ "$(sql '"$k"' 1 "SELECT count(*) || '"':'"' || max(id) FROM lab_data")" = "$want" ]'
		[ "$(sql "$k" 1 "SELECT count(*) FROM lab_data WHERE note = 'split brain'")" = 0 ] || bench_die "lab $k: split-brain rows survived on node1"
		awk -F'\t' -v r="$r" -v s="$S" -v wall="$wall" -v fo="$fo_wall" -v sy="$(elapsed "$ss" "$se")" '
			{ t = $1 - s; l = $2 }
			l ~ /^pgrepl will perform/ && !("plan" in T) { T["plan"] = t }
			l ~ /: -\/\+ node1\.timeline\.\.\.$/ { T["tl"] = t }
			l ~ /pg_rewind: pg_rewind: connected to server/ { T["conn"] = t }
			l ~ /pg_rewind: pg_rewind: Done!/ { T["rwd"] = t }
			l ~ /need to copy [0-9]+ MB/ { if (match(l, /copy [0-9]+ MB/)) { x = substr(l, RSTART + 5, RLENGTH - 8); mb = x } }
			l ~ /pg_basebackup:/ { if (!("bb" in T)) T["bb"] = t; T["bbd"] = t }
			l ~ /node1\.timeline done in/ { T["tld"] = t; if (match(l, /done in [0-9.]+s/)) { x = substr(l, RSTART + 8, RLENGTH - 9); step = x } }
			l ~ / done in [0-9.]+s/ { T["last"] = t }
			function d(a, b) { return ((a in T) && (b in T)) ? sprintf("%.3f", T[b] - T[a]) : "-" }
			END {
				T["start"] = 0; T["end"] = wall
				# r wall step(printed) gather_plan tl_to_conn(ckpt+ssh | mv+bb start) rewind|bb conn_to_done... done_to_stream follow final copyMB failover sync
				if ("conn" in T) { a = d("tl", "conn"); b = d("conn", "rwd"); c = d("rwd", "tld") }
				else { a = d("tl", "bb"); b = d("bb", "bbd"); c = d("bbd", "tld") }
				printf "%s %.3f %s %s %s %s %s %s %s %s %s %s\n", r, wall, step == "" ? "-" : step,
					d("start", "plan"), a, b, c, d("tld", "last"), d("last", "end"), mb == "" ? "-" : mb, fo, sy
			}' "$log" >>"$BENCH_TMP/$method.rows"
		echo "   $method $r: apply ${wall}s, node1.timeline step $(awk '{ print $3 }' "$BENCH_TMP/$method.rows" | tail -1)s (failover apply ${fo_wall}s)" >&2
		# Back to node1 as primary (untimed for the targets; printed).
		set_primary "$k" node1
		stamped_pgrepl "$k" "$blog" apply --auto-approve
		if [ "$RC" != 0 ] || ! grep -q 'A fresh plan shows no changes' "$blog"; then
			show_log "$blog"
			bench_die "lab $k: switchover back to node1 exited $RC"
		fi
		echo "$(elapsed "$S" "$E") $RC" >>"$BENCH_TMP/$method-back.rows"
		wait_until 20 "node2 and node3 to stream from node1" eval "streams_from $k 2 1 && streams_from $k 3 1"
	done
	keep_logs "$k"
	lab_down "$k"
}

: >"$BENCH_TMP/rewind.rows"
: >"$BENCH_TMP/basebackup.rows"
: >"$BENCH_TMP/rewind-back.rows"
: >"$BENCH_TMP/basebackup-back.rows"
switchover_part
if [ "$REBASES" -gt 0 ]; then
	rebase_part "$K_RW" rewind
	rebase_part "$K_BB" basebackup
fi
total=$(elapsed "$t0" "$(now)")

# ------------------------------------------------------------------ report
col() { awk -v c="$2" '$c != "-" { print $c }' "$1" >"$BENCH_TMP/col"; stats "$BENCH_TMP/col"; }
line() { # label "n min med p90 max mean" [target verdict-op limit]
	local n min med p90 max mean v=-
	read -r n min med p90 max mean <<<"$2"
	[ -n "${4:-}" ] && [ "$n" != 0 ] && v=$(verdict "$med" "$4" "$5")
	printf '%-58s %3s %7s %7s %7s  %-9s %s\n' "$1" "$n" "$min" "$med" "$max" "${3:-}" "$v"
}
header() { printf '%-58s %3s %7s %7s %7s  %-9s %s\n' "$1" n min median max target verdict; }

echo
echo "pgrepl switchover and re-base ($(bench_env_line); SSH masters $([ "${PGREPL_SSH_PERSIST:-}" = 0 ] && echo 'cold: PGREPL_SSH_PERSIST=0' || echo 'reused between runs (default)'))"
echo "load average (1 min) at the timed commands: $(sort -g "$BENCH_TMP/load" | head -1)..$(sort -g "$BENCH_TMP/load" | tail -1); at start $LOAD_START; other labs on the host now: $(ls /var/tmp/pgrepl-lab 2>/dev/null | grep -c '^[0-9]' || true)"
echo
echo "1. switchover on a 3-node lab under a $RATE writes/s client ($ROUNDS x 1->2 and 2->1; no committed row lost)"
header "seconds (wall)"
R=$BENCH_TMP/sw.rows
line "write-unavailability (last commit old -> first commit new)" "$(col "$R" 4)" "<= 0.7 s" "<=" 0.7
line "pgrepl apply, whole command" "$(col "$R" 3)" "<= 2.5 s" "<=" 2.5
echo "  where the time goes (from pgrepl's time-stamped output):"
line "  gather + plan (SSH connect, read every node)" "$(col "$R" 5)"
line "  pre-steps (slots on the candidate)" "$(col "$R" 6)"
line "  cluster.primary step (checkpoint, stop, promote, rejoin)" "$(col "$R" 7)"
line "  follow-up (node3 re-pointed, old slots dropped)" "$(col "$R" 8)"
line "  final re-gather (plan must be empty) + exit" "$(col "$R" 9)"
line "  last old commit, from the step's start" "$(col "$R" 12)"
line "  first new commit, from the step's start" "$(col "$R" 13)"
line "  promotion after the shutdown began (pgrepl's own figure)" "$(col "$R" 14)"
echo "  per switchover: round dir | apply unavail | gather pre step follow final | committed failed-ticks"
awk '{ printf "    %s %s->%s | %s %s | %s %s %s %s %s | %s %s\n", $1, substr($2, 1, 1), substr($2, 2, 1), $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$R"

rebase_report() { # method title
	local R=$BENCH_TMP/$1.rows
	echo
	echo "$2"
	header "seconds (wall)"
	if [ "$1" = rewind ]; then
		line "apply that re-bases node1 (whole command)" "$(col "$R" 2)" "<= 1 s" "<=" 1
		line "node1.timeline step alone (as pgrepl prints it)" "$(col "$R" 3)" "<= 1 s" "<=" 1
	else
		line "apply that re-bases node1 (whole command)" "$(col "$R" 2)"
		line "node1.timeline step alone (as pgrepl prints it)" "$(col "$R" 3)"
	fi
	echo "  where the time goes (from pgrepl's time-stamped output):"
	line "  gather + plan" "$(col "$R" 4)"
	if [ "$1" = rewind ]; then
		line "  step start -> pg_rewind connected (CHECKPOINT on source, ssh)" "$(col "$R" 5)"
		line "  pg_rewind connected -> Done! (file lists, copy, fsync)" "$(col "$R" 6)"
		line "  pg_rewind done -> step done (recovery conf, start, streaming)" "$(col "$R" 7)"
	else
		line "  step start -> first pg_basebackup line (stop, mv, ckpt)" "$(col "$R" 5)"
		line "  first -> last pg_basebackup line (the copy)" "$(col "$R" 6)"
		line "  base backup done -> step done (recovery conf, start, streaming)" "$(col "$R" 7)"
	fi
	line "  follow-up round (re-gather, hba rewritten, reload)" "$(col "$R" 8)"
	line "  final re-gather (plan must be empty) + exit" "$(col "$R" 9)"
	line "failover apply --force before it (node1 cut)" "$(col "$R" 11)"
	line "switchover back to node1 afterwards (1 GB database)" "$(col "$BENCH_TMP/$1-back.rows" 1)"
	line "sync before the timed apply (not included)" "$(col "$R" 12)"
	echo "  per re-base: r | apply step | gather a b c follow final | MB copied by pg_rewind | failover"
	awk '{ printf "    %s | %s %s | %s %s %s %s %s %s | %s | %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$R"
}
if [ "$REBASES" -gt 0 ]; then
	rebase_report rewind "2a. re-base a diverged old primary by pg_rewind (3 nodes, database $(numfmt --to=iec "$(cat "$BENCH_TMP/size-rewind")")B)"
	rebase_report basebackup "2b. re-base it by a fresh base backup (wal_log_hints = false, database $(numfmt --to=iec "$(cat "$BENCH_TMP/size-basebackup")")B)"
fi
echo
echo "verdicts compare the median. Unavailability is measured between commit acknowledgements"
echo "seen by the client, whose ticks are $(awk -v r="$RATE" 'BEGIN { printf "%.0f", 1000 / r }') ms apart. Whole script: ${total}s (load at the end: $(cut -d' ' -f1-3 /proc/loadavg))."
