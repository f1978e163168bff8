#!/usr/bin/env bash
# Run pgrepl's whole test suite on a Debian 12 machine, as root:
#
#     bash lab/test.sh [cargo test arguments...]
#
# Installs what the lab tests need when it is missing (PostgreSQL from
# Debian's packages, openssh-server, iproute2, a C linker), then runs
# `cargo test --locked`. The lab tests bring up their own labs (K from
# PGREPL_LAB_BASE_K, default 200) and tear them down. As non-root the lab
# tests fail, unless PGREPL_SKIP_LAB_TESTS=1 skips them (and says so).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$(id -u)" = 0 ]; then
	bash "$HERE/lab.sh" install
	if ! command -v cc >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev ||
			{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev; }
	fi
elif [ "${PGREPL_SKIP_LAB_TESTS:-}" != 1 ]; then
	echo "test.sh: not root: the lab tests will fail (set PGREPL_SKIP_LAB_TESTS=1 to skip them)" >&2
fi
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then export PATH=$HOME/.cargo/bin:$PATH; fi
cd "$HERE/.."
exec cargo test --locked "$@"
