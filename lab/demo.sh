#!/usr/bin/env bash
# Try pgrepl on a fresh Debian 12 machine, as root:
#
#     bash lab/demo.sh            # lab K=1 (198.18.1.0/24), 3 nodes
#     bash lab/demo.sh --k 7      # another lab number
#     bash lab/demo.sh --runtime docker   # PostgreSQL in containers (lab/docker.sh)
#
# Installs what is missing (PostgreSQL from Debian's packages, openssh-server,
# iproute2, a C linker for cargo), builds pgrepl (`cargo build --release`;
# cargo itself must be installed, e.g. with rustup), brings up a 3-node lab
# (node1 a running primary with a little data, node2 and node3 empty) and runs
# pgrepl on the lab's own cluster file: validate, then plan / apply / status
# where this build of pgrepl has them. Tear down with `bash lab/lab.sh --k K down`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
LAB_SH=$HERE/lab.sh
K=${PGREPL_LAB_K:-1}
NODES=3
RUNTIME=${PGREPL_LAB_RUNTIME:-bare}

while [ $# -gt 0 ]; do
	case $1 in
	--k) K=${2:?--k needs a value}; shift 2 ;;
	--k=*) K=${1#--k=}; shift ;;
	--nodes) NODES=${2:?--nodes needs a value}; shift 2 ;;
	--nodes=*) NODES=${1#--nodes=}; shift ;;
	--runtime) RUNTIME=${2:?--runtime needs a value}; shift 2 ;;
	--runtime=*) RUNTIME=${1#--runtime=}; shift ;;
	-h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "demo.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
done

step() { printf '\n==> %s\n' "$*"; }
lab() { bash "$LAB_SH" --k "$K" "$@"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh: run it as root (the lab creates network namespaces)" >&2; exit 1; }

step "Installing what is missing"
lab --runtime "$RUNTIME" install
if ! command -v cc >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev ||
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev; }
fi
if ! command -v cargo >/dev/null; then
	[ -x "$HOME/.cargo/bin/cargo" ] && export PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null || {
	echo "demo.sh: cargo not found; install Rust first (https://rustup.rs), then run this again" >&2
	exit 1
}

step "Building pgrepl (cargo build --release)"
(cd "$REPO" && cargo build --release --locked)
PGREPL=$REPO/target/release/pgrepl
[ -n "${CARGO_TARGET_DIR:-}" ] && PGREPL=$CARGO_TARGET_DIR/release/pgrepl

step "Bringing up lab $K ($NODES nodes on 198.18.$K.0/24, runtime $RUNTIME)"
rc=0
CONFIG=$(lab --nodes "$NODES" --runtime "$RUNTIME" up) || rc=$?
if [ $rc = 3 ]; then
	if lab status >/dev/null 2>&1; then
		echo "lab $K is already up: using it"
		CONFIG=$(lab config)
	else
		echo "demo.sh: lab $K exists but is not healthy; run: bash $LAB_SH --k $K down" >&2
		exit 1
	fi
elif [ $rc != 0 ]; then
	exit $rc
fi
ENV_FILE=$(lab env)
# shellcheck disable=SC1090
. "$ENV_FILE"
lab status

HELP=$("$PGREPL" --help 2>&1 || true)
has() { grep -qE "^[[:space:]]+$1([[:space:]]|$)" <<<"$HELP"; }
failed=
run() {
	echo "\$ pgrepl $*"
	"$PGREPL" "$@" || { echo "(pgrepl $1 exited with $?)"; failed="$failed $1"; }
}

step "pgrepl on the lab's cluster file ($CONFIG)"
ran=
if has validate; then run validate -c "$CONFIG"; ran=1; fi
if has plan; then run plan -c "$CONFIG"; ran=1; fi
if has apply; then
	run apply -c "$CONFIG" --auto-approve
	has plan && run plan -c "$CONFIG"
fi
if has status; then run status -c "$CONFIG"; fi
[ -n "$ran" ] || echo "(this build of pgrepl has neither validate nor plan yet)"
if [ -n "$failed" ]; then
	echo "demo.sh: pgrepl failed:$failed (see above); the lab is still up for a look" >&2
fi

cat <<EOF

==> Lab $K is up. Try next:
  . $ENV_FILE                       # the passwords the cluster file refers to
  $PGREPL plan -c $CONFIG
  $PGREPL apply -c $CONFIG
  \$EDITOR $CONFIG                  # e.g. primary = "node2": plan shows a switchover, apply does it
  bash $LAB_SH --k $K cut 1; \$EDITOR $CONFIG; $PGREPL apply -c $CONFIG --force   # failover
  bash $LAB_SH --k $K heal 1; $PGREPL plan -c $CONFIG   # node1 diverged? apply re-bases it
  bash $LAB_SH --k $K status
  bash $LAB_SH --k $K sql 1 'SELECT count(*) FROM lab_data'
  bash $LAB_SH --k $K ssh node2     # as pgrepl does: $(sed -n 's/^user = "\(.*\)"$/\1/p' "$CONFIG" | head -1)@198.18.$K.12, strict host keys
  bash $LAB_SH --k $K cut 2   /   heal 2   /   stop 1   /   start 1
Tear it down (removes namespaces, links, processes and $(lab dir)):
  bash $LAB_SH --k $K down
EOF
[ -z "$failed" ] || exit 1
