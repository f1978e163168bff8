# Shared helpers of the benchmark scripts (sourced, not run).
# Expects: set -euo pipefail in the caller, cwd = the repository root.

BENCH_LAB=lab/lab.sh
PGREPL=${CARGO_TARGET_DIR:-target}/release/pgrepl  # cargo builds there
BENCH_LABS_UP=()  # the labs this script brought up (and only those are torn down)
BENCH_TMP=  # made by bench_init

bench_die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

bench_cleanup() {
	local rc=$? k
	trap - EXIT INT TERM
	for k in "${BENCH_LABS_UP[@]}"; do
		bash "$BENCH_LAB" --k "$k" down >/dev/null 2>&1 || echo "${0##*/}: lab $k: down failed; run: bash $BENCH_LAB --k $k down" >&2
	done
	[ -n "$BENCH_TMP" ] && rm -rf "$BENCH_TMP"
	exit "$rc"
}

bench_init() {
	[ "$(id -u)" = 0 ] || bench_die "run as root (the lab needs network and mount namespaces)"
	trap bench_cleanup EXIT
	BENCH_TMP=$(mktemp -d /tmp/pgrepl-bench.XXXXXX)
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# A lab whose owner is gone can be reclaimed by the test fixture.
	export PGREPL_LAB_OWNER_PID=$$
	# Experiment: BENCH_SSH_OPTS="-o KexAlgorithms=curve25519-sha256" puts an
	# `ssh` wrapper adding these options first in PATH (pgrepl runs `ssh`).
	if [ -n "${BENCH_SSH_OPTS:-}" ]; then
		mkdir -p "$BENCH_TMP/bin"
		printf '#!/bin/sh\nexec /usr/bin/ssh %s "$@"\n' "$BENCH_SSH_OPTS" >"$BENCH_TMP/bin/ssh"
		chmod 755 "$BENCH_TMP/bin/ssh"
		export PATH="$BENCH_TMP/bin:$PATH"
	fi
}

bench_build() {
	echo "== cargo build --release" >&2
	cargo build --release --quiet || bench_die "cargo build --release failed"
	[ -x "$PGREPL" ] || bench_die "$PGREPL missing after the build"
}

# lab_up K N [OPTION...]: brings lab K up with N nodes and lab.sh's
# OPTIONs (--sudo) (fails if K is in use: never touches a lab this script
# did not make).
lab_up() {
	local k=$1 n=$2 rc=0
	shift 2
	bash "$BENCH_LAB" --k "$k" --nodes "$n" "$@" up >"$BENCH_TMP/up-$k.out" 2>"$BENCH_TMP/up-$k.err" || rc=$?
	if [ $rc = 3 ]; then
		bench_die "lab $k is in use by someone else (or left over): pick another K (see --help) or run: bash $BENCH_LAB --k $k down"
	fi
	# From here on it is ours, even half-made.
	BENCH_LABS_UP+=("$k")
	[ $rc = 0 ] || { cat "$BENCH_TMP/up-$k.err" >&2; bench_die "lab $k: up failed (exit $rc)"; }
}

lab_down() {
	local k=$1 i
	bash "$BENCH_LAB" --k "$k" down >/dev/null 2>&1 || bench_die "lab $k: down failed"
	for i in "${!BENCH_LABS_UP[@]}"; do
		[ "${BENCH_LABS_UP[$i]}" = "$k" ] && unset 'BENCH_LABS_UP[i]'
	done
	BENCH_LABS_UP=("${BENCH_LABS_UP[@]}")
}

lab_conf() { echo "/var/tmp/pgrepl-lab/$1/pgrepl.toml"; }

# in_lab K CMD...: CMD with lab K's passwords in its environment.
in_lab() {
	local k=$1
	shift
	(
		# shellcheck disable=SC1090
		. "/var/tmp/pgrepl-lab/$k/env"
		"$@"
	)
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# timed_pgrepl K OUTFILE ARGS...: runs pgrepl ARGS -c <lab K's file>, appends
# "SECONDS EXIT" to OUTFILE; stdout/stderr of the last run go to
# $BENCH_TMP/last.{out,err}.
timed_pgrepl() {
	local k=$1 out=$2 conf s e rc=0
	shift 2
	conf=$(lab_conf "$k")
	# shellcheck disable=SC1090
	. "/var/tmp/pgrepl-lab/$k/env"
	s=$(now)
	"$PGREPL" "$@" -c "$conf" >"$BENCH_TMP/last.out" 2>"$BENCH_TMP/last.err" || rc=$?
	e=$(now)
	echo "$(elapsed "$s" "$e") $rc" >>"$out"
	return 0
}

# stats FILE: "n min median p90 max mean" of column 1 (nearest-rank p90).
stats() {
	sort -g -k1,1 "$1" | awk '
		{ v[NR] = $1; sum += $1 }
		END {
			if (NR == 0) { print "0 - - - - -"; exit }
			n = NR
			med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			p = int(0.9 * n); if (p < 0.9 * n) p++; if (p < 1) p = 1
			printf "%d %.3f %.3f %.3f %.3f %.3f\n", n, v[1], med, v[p], v[n], sum / n
		}'
}

# failures FILE: how many runs exited with something else than $2 (default 0).
failures() { awk -v ok="${2:-0}" '$2 != ok { c++ } END { print c + 0 }' "$1"; }

# verdict VALUE OP LIMIT: "ok" or "MISS".
verdict() { awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == "<") ? v < l : v <= l; print ok ? "ok" : "MISS" }'; }

bench_env_line() {
	local major
	# The labs' major: PGREPL_LAB_PG, else Debian's own (not a wheel install).
	major=${PGREPL_LAB_PG:-}
	if [ -z "$major" ]; then
		for d in /usr/lib/postgresql/[0-9]*; do
			[ -e "$d/.pgrepl-lab-wheel" ] || major=${d##*/}
		done
	fi
	echo "host: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL ${major:-?}, $(ssh -V 2>&1 | cut -d, -f1), pgrepl $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo '+uncommitted src changes')${BENCH_SSH_OPTS:+, ssh $BENCH_SSH_OPTS}"
}
