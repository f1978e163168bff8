#!/usr/bin/env bash
# Benchmark: a switchover seen by clients through pgBouncer (issue 16).
# Two clients run at once during each switchover, each BENCH_RATE (default
# 50) single-row INSERT transactions per second:
#   pooled  one connection to pgBouncer on pgb1 (database `lab`, transaction
#           pooling, which pgrepl PAUSEs, re-points and RESUMEs); after an
#           error it reconnects and goes on;
#   direct  one connection to the primary; after an error it tries the
#           other node in the same tick (what a client without a pooler
#           does at best).
# Per client and switchover: failed transactions, the longest stall (the
# longest time between two commits that follow each other, which holds a
# transaction held by PAUSE), and committed rows lost (committed ids missing
# on the new primary). Targets (issue 16): 0 failed through pgBouncer, stall
# under 1 s, 0 lost.
#
# Usage: bench/pooler_switchover.sh [-n ROUNDS]   (as root; ~1 minute)
#   -n ROUNDS  round trips node1 -> node2 -> node1 (default 3, env BENCH_ROUNDS)
#   env BENCH_K_PGB: the lab number (default 116; 115..119)
#   env BENCH_RATE: transactions per second of each client (default 50)
#   env BENCH_PYTHON: a python3 that can `import psycopg` (else the venv
#       /var/tmp/pgrepl-bench-venv, made once with psycopg[binary] from PyPI)
# The lab (3 nodes, 1 pooler) is torn down on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-3}
K=${BENCH_K_PGB:-116}
RATE=${BENCH_RATE:-50}
VENV=/var/tmp/pgrepl-bench-venv
while [ $# -gt 0 ]; do
	case $1 in
	-n) ROUNDS=${2:?-n needs a number}; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bench_die "-n must be a positive number"
[[ $RATE =~ ^[1-9][0-9]*$ ]] || bench_die "BENCH_RATE must be a positive number"
[[ $K =~ ^[0-9]+$ ]] && [ "$K" -ge 115 ] && [ "$K" -le 119 ] || bench_die "BENCH_K_PGB must be in 115..119"

bench_init
CLIENTS=()
pgb_cleanup() {
	local rc=$? p
	for p in "${CLIENTS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${CLIENTS[@]}"; do wait "$p" 2>/dev/null || true; done
	(exit "$rc") || true
	bench_cleanup
}
trap pgb_cleanup EXIT

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
"""write RATE LOG CONNINFO...: INSERTs at RATE/s until SIGTERM (at most
120 s); on an error, the next conninfo in the same tick. One line per
try: START END OK ID. The password comes from PGPASSWORD.
check LOG NEWPRIMARY_CONNINFO: prints FAILED STALL_S COMMITTED LOST."""
import signal, sys, time
import psycopg

def write(rate, log, conninfos):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    conns = [None] * len(conninfos)
    at = 0
    period = 1.0 / rate
    t_end = time.time() + 120
    nxt = time.time()
    with open(log, "w") as out:
        while not stop and time.time() < t_end:
            for attempt in range(len(conninfos)):
                i = (at + attempt) % len(conninfos)
                start = time.time()
                try:
                    if conns[i] is None:
                        # No server-side prepared statements: pgBouncer 1.18's
                        # transaction pooling cannot keep them (a switchover
                        # gives the client another server connection).
                        conns[i] = psycopg.connect(conninfos[i], autocommit=True,
                                                   connect_timeout=3, prepare_threshold=None)
                    row = conns[i].execute(
                        "INSERT INTO lab_data(note) VALUES ('bench') RETURNING id").fetchone()
                    out.write(f"{start:.6f} {time.time():.6f} 1 {row[0]}\n")
                    at = i
                    break
                except Exception as e:
                    why = " ".join(str(e).split())[:200]
                    out.write(f"{start:.6f} {time.time():.6f} 0 - {why}\n")
                    try:
                        if conns[i] is not None:
                            conns[i].close()
                    except Exception:
                        pass
                    conns[i] = None
            out.flush()
            nxt += period
            time.sleep(max(0.0, nxt - time.time()))

def check(log, conninfo):
    tries = [l.split() for l in open(log)]
    ok = [t for t in tries if t[2] == "1"]
    failed = len(tries) - len(ok)
    ends = [float(t[1]) for t in ok]
    stall = max((b - a for a, b in zip(ends, ends[1:])), default=0.0)
    ids = {int(t[3]) for t in ok}
    with psycopg.connect(conninfo) as c:
        have = {r[0] for r in c.execute("SELECT id FROM lab_data")}
    print(failed, f"{stall:.3f}", len(ok), len(ids - have))

if sys.argv[1] == "write":
    write(int(sys.argv[2]), sys.argv[3], sys.argv[4:])
else:
    check(sys.argv[2], sys.argv[3])
PYEOF

bench_build
echo "== lab $K: 3 nodes, 1 pooler" >&2
bash "$BENCH_LAB" --k "$K" --nodes 3 --poolers 1 up >"$BENCH_TMP/up.out" 2>"$BENCH_TMP/up.err" || {
	rc=$?
	[ $rc = 3 ] && bench_die "lab $K is in use: pick another BENCH_K_PGB or run: bash $BENCH_LAB --k $K down"
	BENCH_LABS_UP+=("$K")
	cat "$BENCH_TMP/up.err" >&2
	bench_die "lab $K: up failed"
}
BENCH_LABS_UP+=("$K")
CONF=$(lab_conf "$K")
in_lab "$K" "$PGREPL" apply -c "$CONF" --auto-approve >"$BENCH_TMP/converge.log" 2>&1 || {
	cat "$BENCH_TMP/converge.log" >&2
	bench_die "converge failed"
}
# shellcheck disable=SC1090
. "/var/tmp/pgrepl-lab/$K/env"
export PGPASSWORD=$PGREPL_LAB_APP_PASSWORD
PGB=$(bash "$BENCH_LAB" --k "$K" pooler-addr 1)
node_ci() { echo "host=198.18.$K.$((10 + $1)) port=5432 dbname=postgres user=lab_app"; }
POOLED="host=$PGB port=6432 dbname=lab user=lab_app"

printf '%-4s %-10s %8s %8s %9s %6s %8s %8s %9s %6s %8s\n' \
	"#" "switch" "pooled:" "failed" "stall_s" "lost" "direct:" "failed" "stall_s" "lost" "apply_s"
n=0
for r in $(seq 1 "$ROUNDS"); do
	for step in "1 2" "2 1"; do
		set -- $step
		from=$1 to=$2
		n=$((n + 1))
		"$PY" "$BENCH_TMP/client.py" write "$RATE" "$BENCH_TMP/pooled.$n" "$POOLED" &
		CLIENTS=($!)
		"$PY" "$BENCH_TMP/client.py" write "$RATE" "$BENCH_TMP/direct.$n" "$(node_ci "$from")" "$(node_ci "$to")" &
		CLIENTS+=($!)
		sleep 1
		sed -i "s/^primary = \"node$from\"/primary = \"node$to\"/" "$CONF"
		t0=$EPOCHREALTIME
		in_lab "$K" "$PGREPL" apply -c "$CONF" --auto-approve >"$BENCH_TMP/apply.$n.log" 2>&1 || {
			cat "$BENCH_TMP/apply.$n.log" >&2
			bench_die "switchover node$from -> node$to failed"
		}
		t1=$EPOCHREALTIME
		sleep 1
		kill -TERM "${CLIENTS[@]}"
		wait "${CLIENTS[@]}" || true
		CLIENTS=()
		read -r pf ps pc pl < <("$PY" "$BENCH_TMP/client.py" check "$BENCH_TMP/pooled.$n" "$(node_ci "$to")")
		read -r df ds dc dl < <("$PY" "$BENCH_TMP/client.py" check "$BENCH_TMP/direct.$n" "$(node_ci "$to")")
		printf '%-4s %-10s %8s %8s %9s %6s %8s %8s %9s %6s %8s\n' \
			"$n" "node$from>node$to" "$pc" "$pf" "$ps" "$pl" "$dc" "$df" "$ds" "$dl" \
			"$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
		grep -o "clients held [0-9.]*s" "$BENCH_TMP/apply.$n.log" >&2 || true
		[ -z "${BENCH_VERBOSE:-}" ] || grep -h ' 0 - ' "$BENCH_TMP/pooled.$n" >&2 || true
	done
done
echo "(pooled:/direct: committed transactions; stall_s: longest time between two commits)" >&2
