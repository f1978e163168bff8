#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (Debian 12,
# as root), then format, lint, and every test — pure ones and the lab tests
# against real PostgreSQL nodes over real SSH in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the lab needs (PostgreSQL from Debian, openssh-server, iproute2),
# installed by the lab itself when missing; lab tests need root anyway.
if [ "$(id -u)" -eq 0 ]; then
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
echo "== cargo test"
cargo test --quiet -- --test-threads "${PGREPL_TEST_THREADS:-4}"
