#!/usr/bin/env bash
# Benchmark: converge, switchover and re-base figures per PostgreSQL major,
# in one table (issue 17). Runs bench/converge.sh and bench/switchover.sh
# once per major with PGREPL_LAB_PG set, keeps their whole reports, and
# prints the medians side by side.
#
# Usage: bench/majors.sh [MAJOR...]     (as root; ~5 minutes a major)
#   MAJOR...   the majors to measure (default: 15 16 17 18)
#   env BENCH_ROUNDS (default 1) and BENCH_REBASES (default 1): rounds of
#       converge and switchover, and re-bases per method, per major
#   env BENCH_MAJORS_LOGS=DIR: where the full reports go (default a temp dir,
#       printed at the end)
#
# Each figure is the median over the rounds of that major's run, taken from
# the report lines named in the table; the reports say the load and the
# per-phase split. The majors run one after the other, so a busy host
# shifts them unevenly: compare within a column with care.
set -euo pipefail
cd "$(dirname "$0")/.."

majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(15 16 17 18)
export BENCH_ROUNDS=${BENCH_ROUNDS:-1} BENCH_REBASES=${BENCH_REBASES:-1}
logs=${BENCH_MAJORS_LOGS:-$(mktemp -d /var/tmp/pgrepl-bench-majors-XXXXXX)}
mkdir -p "$logs"

for m in "${majors[@]}"; do
	echo "== PostgreSQL $m: bench/converge.sh, bench/switchover.sh (reports in $logs)" >&2
	bash lab/lab.sh --pg "$m" install
	PGREPL_LAB_PG=$m bash bench/converge.sh >"$logs/converge-$m.txt" 2>"$logs/converge-$m.err" ||
		{ tail -20 "$logs/converge-$m.err" >&2; echo "bench/converge.sh failed on $m" >&2; exit 1; }
	PGREPL_LAB_PG=$m bash bench/switchover.sh >"$logs/switchover-$m.txt" 2>"$logs/switchover-$m.err" ||
		{ tail -20 "$logs/switchover-$m.err" >&2; echo "bench/switchover.sh failed on $m" >&2; exit 1; }
done

# The median column of the first report line starting with LABEL after
# the line starting with SECTION (the reports print min, median, max).
median() { # file section label
	awk -v s="$2" -v l="$3" '
		index($0, s) == 1 { on = 1; next }
		on && index($0, l) == 1 {
			rest = substr($0, length(l) + 1); n = split(rest, f, " ")
			# converge: min med max [target verdict]; switchover: n min med max ...
			print (f[1] ~ /^[0-9]+$/ && n >= 4 && f[2] ~ /\./) ? f[3] : f[2]; exit
		}' "$1"
}

rows=(
	"converge.fresh 3-node lab -> converged, whole apply|converge|pgrepl apply vs raw|pgrepl apply (start to exit, final plan empty)"
	"converge.  of which pg_basebackup (slowest standby)|converge|pgrepl apply vs raw|  pg_basebackup inside pgrepl (slowest standby)"
	"switchover.switchover write-unavailability|switchover|1. switchover|write-unavailability (last commit old -> first commit new)"
	"switchover.switchover, whole apply|switchover|1. switchover|pgrepl apply, whole command"
	"switchover.re-base by pg_rewind, whole apply|switchover|2a.|apply that re-bases node1 (whole command)"
	"switchover.re-base by base backup, whole apply|switchover|2b.|apply that re-bases node1 (whole command)"
)

printf '\n%-48s' "seconds, median (bench/majors.sh)"
for m in "${majors[@]}"; do printf ' %8s' "PG $m"; done
echo
for r in "${rows[@]}"; do
	IFS='|' read -r label bench section line <<<"$r"
	printf '%-48s' "${label#*.}"
	for m in "${majors[@]}"; do
		v=$(median "$logs/$bench-$m.txt" "$section" "$line")
		printf ' %8s' "${v:--}"
	done
	echo
done
echo
echo "full reports: $logs"
