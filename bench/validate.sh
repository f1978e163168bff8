#!/usr/bin/env bash
# Benchmark: `pgrepl validate` stays linear on hostile cluster files (issue
# 14: each under a second in a release build).
#
# Usage: bench/validate.sh [-n RUNS] [--no-build]      (any user, no lab; ~10 s)
#   -n RUNS     timed runs per file (default 5, env BENCH_RUNS), after one
#               untimed warm-up run
#   --no-build  time the release binary as it is (default: cargo build --release)
#   env PGREPL: the binary to time, not built (default: the release build,
#               $CARGO_TARGET_DIR/release/pgrepl or target/release/pgrepl)
#
# Generates three files and times `pgrepl validate -c FILE` on each, from
# start to exit:
#  - chain:    5,000 nodes, each node's upstream the previous one (valid);
#  - longname: one unknown setting whose name is 1 MiB long (1 problem);
#  - errors:   20,000 unknown settings (20,000 problems, each with a hint).
# Prints, per file: the exit code, the number of problems reported, the
# size of what validate printed, and min / median / max seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
WANT_PGREPL=${PGREPL:-}
. bench/lib.sh

RUNS=${BENCH_RUNS:-5}
BUILD=1
while [ $# -gt 0 ]; do
	case $1 in
	-n) RUNS=${2:?-n needs a number}; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bench_die "unknown argument $1 (see --help)" ;;
	esac
done

if [ -n "$WANT_PGREPL" ]; then
	PGREPL=$WANT_PGREPL
elif [ "$BUILD" = 1 ]; then
	bench_build
fi
[ -x "$PGREPL" ] || bench_die "$PGREPL missing: build it (cargo build --release) or drop --no-build"

BENCH_TMP=$(mktemp -d /tmp/pgrepl-bench-validate.XXXXXX)
trap 'rm -rf "$BENCH_TMP"' EXIT
export BENCH_VALIDATE_PW=bench

# head_of FILE NODES: [cluster] and [replication], the primary n0.
head_of() {
	printf '[cluster]\nname = "bench"\nprimary = "n0"\n\n'
	printf '[replication]\nuser = "replicator"\npassword = { env = "BENCH_VALIDATE_PW" }\n\n'
}

gen_chain() {
	head_of
	printf '[settings]\nmax_wal_senders = 6000\nmax_replication_slots = 6000\n\n'
	awk 'BEGIN {
		for (i = 0; i < 5000; i++) {
			printf "[nodes.n%d]\nhost = \"10.%d.%d.%d\"\n", i, int(i / 65536), int(i / 256) % 256, i % 256
			if (i > 0) printf "upstream = \"n%d\"\n", i - 1
			print ""
		}
	}'
}

gen_longname() {
	head_of
	printf '[nodes.n0]\nhost = "10.0.0.1"\n\n[settings]\n'
	head -c 1048576 /dev/zero | tr '\0' x
	printf ' = 1\n'
}

gen_errors() {
	head_of
	printf '[nodes.n0]\nhost = "10.0.0.1"\n\n[settings]\n'
	awk 'BEGIN { for (i = 0; i < 20000; i++) printf "unknown_setting_%05d = %d\n", i, i }'
}

echo "validate: $RUNS runs per file after a warm-up; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), pgrepl $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
printf '%-9s %9s %5s %9s %10s %7s %7s %7s\n' file bytes exit problems printed min median max
for name in chain longname errors; do
	file=$BENCH_TMP/$name.toml
	"gen_$name" >"$file"
	times=$BENCH_TMP/$name.times
	: >"$times"
	for i in $(seq 0 "$RUNS"); do
		rc=0
		s=$(now)
		"$PGREPL" validate -c "$file" >"$BENCH_TMP/out" 2>&1 || rc=$?
		e=$(now)
		[ "$i" = 0 ] || echo "$(elapsed "$s" "$e") $rc" >>"$times"
	done
	problems=$(grep -c '^error: ' "$BENCH_TMP/out" || true)
	read -r _ min med _ max _ < <(stats "$times")
	printf '%-9s %9d %5d %9d %10d %7s %7s %7s\n' "$name" "$(wc -c <"$file")" "$rc" \
		"$problems" "$(wc -c <"$BENCH_TMP/out")" "$min" "$med" "$max"
done
