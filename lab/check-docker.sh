#!/usr/bin/env bash
# shellcheck disable=SC2016 # remote commands and Go templates are single-quoted on purpose
# Shell-level check of the lab's docker runtime (lab/docker.sh), as root:
#
#     bash lab/check-docker.sh [--k K] [--pg MAJOR]   # default K 180, Debian's major
#
# Brings up a 3-node docker lab with node3 left without a container, checks
# what lab/docker.sh promises (the SSH user, each node's own dockerd, the
# image's layout, the official one from PostgreSQL 18 on, node1 serving
# lab_data on the node's address, node2's empty data directory, stop/start,
# exec on a stopped node), takes it down and checks nothing is left. Prints
# one line per check and the timings; exits 1 at the first failure (the lab
# is torn down either way).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K=180
PG_OPT=()
while [ $# -gt 0 ]; do
	case $1 in
	--k) K=${2:?--k needs a value}; shift 2 ;;
	--pg) PG_OPT=(--pg "${2:?--pg needs a value}"); shift 2 ;;
	-h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "check-docker.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "check-docker.sh: run it as root" >&2; exit 1; }

lab() { bash "$HERE/lab.sh" --k "$K" "$@"; }
LAB=$(lab dir)
pass=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }
check() { # check DESCRIPTION WANT GOT
	[ "$2" = "$3" ] || fail "$1: want '$2', got '$3'"
	ok "$1"
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
cleanup() { lab down >/dev/null 2>&1 || true; }
trap cleanup EXIT

t0=$EPOCHREALTIME
CONFIG=$(PGREPL_LAB_DOCKER_ABSENT=3 lab "${PG_OPT[@]}" --runtime docker up)
t1=$EPOCHREALTIME
echo "up: $(secs "$t0" "$t1") s"
SSH=(ssh -F "$LAB/ssh_config")
dsock() { echo "unix://$LAB/node$1/docker/run/docker.sock"; }
dk() { local i=$1; shift; DOCKER_HOST=$(dsock "$i") /usr/bin/docker "$@"; }
MAJOR=$(cat "$LAB/major")
PGDATA=/var/lib/postgresql/$MAJOR/docker # the official image's from 18 on
echo "PostgreSQL $MAJOR, PGDATA $PGDATA"

# The cluster file.
grep -q '^user = "pgdocker"$' "$CONFIG" || fail "cluster file: [ssh] user is not pgdocker"
grep -qx "data_dir = \"$PGDATA\"" "$CONFIG" || fail "cluster file: data_dir is not $PGDATA"
grep -qx "bin_dir = \"/usr/lib/postgresql/$MAJOR/bin\"" "$CONFIG" || fail "cluster file: bin_dir"
! grep -q '^service = ' "$CONFIG" || fail "cluster file: a service key (the container is the service)"
for i in 1 2 3; do
	grep -q "^exec = { docker = \"pg-node$i\" }$" "$CONFIG" || fail "cluster file: node$i's exec"
done
ok "cluster file: ssh user pgdocker, container-side paths, exec = { docker = \"pg-nodeI\" } per node"

# SSH as pgdocker (strict host keys), not root, in group docker; each node
# sees its own dockerd through the default socket.
want_ps=("pg-node1 running" "pg-node2 created" "")
for i in 1 2 3; do
	got=$("${SSH[@]}" "node$i" 'echo "$(id -un) $(id -u)"; id -nG | tr " " "\n" | grep -x docker; hostname; docker ps -a --format "{{.Names}} {{.State}}"')
	uid=$(sed -n 1p <<<"$got" | cut -d' ' -f2)
	[ "$uid" != 0 ] || fail "node$i: the SSH user is root"
	check "node$i: ssh as pgdocker (uid $uid), in group docker, hostname node$i, sees only its own containers" \
		"$(printf 'pgdocker %s\ndocker\nnode%s\n%s' "$uid" "$i" "${want_ps[$((i - 1))]}" | sed '/^$/d')" "$got"
done

# The image: the official layout (18 on).
IMAGE=pgrepl-lab/postgres:$MAJOR
got=$(dk 1 inspect -f '{{.Config.User}}|{{.Config.StopSignal}}|{{index .Config.Entrypoint 0}}|{{index .Config.Cmd 0}}|{{range $k, $v := .Config.Volumes}}{{$k}}{{end}}' "$IMAGE")
got="$got|$(dk 1 inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed -n 's/^PGDATA=//p')"
check "image: no USER (root entrypoint drops to postgres), STOPSIGNAL SIGINT, docker-entrypoint.sh postgres, VOLUME /var/lib/postgresql, PGDATA $PGDATA" \
	"|SIGINT|docker-entrypoint.sh|postgres|/var/lib/postgresql|$PGDATA" "$got"
got=$(dk 1 inspect -f '{{.HostConfig.NetworkMode}}|{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}' pg-node1)
check "pg-node1: --network host, the named volume pgdata at /var/lib/postgresql" \
	"host|volume pgdata /var/lib/postgresql" "$got"
got=$(dk 1 exec pg-node1 sh -c 'ps -o user=,comm= -p 1; id -u postgres; id -g postgres; echo "$PGDATA"; stat -c "%u:%g %a" /var/lib/postgresql "${PGDATA%/*}" "$PGDATA"')
check "pg-node1: postgres is PID 1 as postgres (uid 999, gid 999); /var/lib/postgresql, $MAJOR and PGDATA 999:999 0755, 0755, 0700" \
	"$(printf 'postgres postgres\n999\n999\n%s\n999:999 755\n999:999 755\n999:999 700' "$PGDATA")" "$got"
# pgrepl keeps files beside the data directory: on the volume, so they
# outlive the container.
lab exec 1 sh -c "echo kept >/var/lib/postgresql/$MAJOR/.check-docker" || fail "pg-node1: postgres cannot write beside PGDATA"
check "pg-node1: a file postgres writes beside PGDATA is on the volume (host side), 999:999" \
	"999:999 kept" "$(f=$LAB/node1/docker/volumes/pgdata/_data/$MAJOR/.check-docker; stat -c '%u:%g' "$f" | tr '\n' ' '; cat "$f")"
lab exec 1 rm "/var/lib/postgresql/$MAJOR/.check-docker"
dk 1 exec -u postgres pg-node1 perl -MIO::Socket::UNIX -e \
	'IO::Socket::UNIX->new(Peer => "/var/run/postgresql/.s.PGSQL.5432") or die "$!\n"' ||
	fail "pg-node1: perl cannot reach the server's Unix socket"
ok "pg-node1: perl with IO::Socket::UNIX reaches the server's socket (the SQL bridge)"

# node1 serves lab_data, on the node's own address.
check "node1: lab_data has 1000 rows, listen_addresses *, data_directory PGDATA" "1000|*|$PGDATA" \
	"$(lab sql 1 "SELECT count(*) || '|' || current_setting('listen_addresses') || '|' || current_setting('data_directory') FROM lab_data")"
addr=$(grep -A1 '^\[nodes.node1\]' "$CONFIG" | sed -n 's/^host = "\(.*\)"/\1/p')
pg_isready -q -h "$addr" -p 5432 -t 3 || fail "node1: no server on $addr:5432"
ok "node1: the server answers on the node's address $addr:5432 (--network host)"

# node2: a container that never ran, on a fresh volume: the image's empty
# PGDATA and its parents, which postgres owns.
check "node2: pg-node2 created, never started" "created" "$(dk 2 inspect -f '{{.State.Status}}' pg-node2)"
check "node2: the named volume pgdata at /var/lib/postgresql" "volume pgdata /var/lib/postgresql" \
	"$(dk 2 inspect -f '{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}' pg-node2)"
got=$(lab exec 2 sh -c 'id -u; stat -c "%u:%g %a" /var/lib/postgresql "${0%/*}" "$0"; ls -A "$0" | wc -l' "$PGDATA")
check "node2: exec on a stopped node runs in a one-off container as uid 999; /var/lib/postgresql, $MAJOR, PGDATA 999:999 0755, 0755, 0700; PGDATA empty" \
	"$(printf '999\n999:999 755\n999:999 755\n999:999 700\n0')" "$got"
dk 2 ps -a --format '{{.Names}}' | grep -qvx pg-node2 && fail "node2: the one-off container was left behind"
ok "node2: the one-off container is gone (--rm)"
dk 2 start pg-node2 >/dev/null
for _ in $(seq 1 100); do
	[ "$(dk 2 inspect -f '{{.State.Status}}' pg-node2)" = exited ] && break
	sleep 0.05
done
check "node2: started on its empty volume, pg-node2 exits" "exited" "$(dk 2 inspect -f '{{.State.Status}}' pg-node2)"
# (the logs are read whole first: grep -q ending early would be a SIGPIPE, an error under pipefail)
logs=$(dk 2 logs pg-node2 2>&1)
grep -q 'holds no database' <<<"$logs" || fail "node2: the entrypoint did not say why"
check "node2: ... and nothing was written to PGDATA" "0" "$(lab exec 2 sh -c 'ls -A "$0" | wc -l' "$PGDATA")"

# node3: no container, no volume.
check "node3: no container, no volume" "|" "$(dk 3 ps -aq)|$(dk 3 volume ls -q)"

# stop / start: docker stop (SIGINT: fast shutdown) and docker start.
for r in 1 2 3; do
	a=$EPOCHREALTIME
	dk 1 stop pg-node1 >/dev/null
	b=$EPOCHREALTIME
	dk 1 start pg-node1 >/dev/null
	c=$EPOCHREALTIME
	until dk 1 exec -u postgres pg-node1 pg_isready -q -h /var/run/postgresql -t 1 2>/dev/null; do sleep 0.02; done
	d=$EPOCHREALTIME
	echo "round $r: docker stop $(secs "$a" "$b") s, docker start $(secs "$b" "$c") s, accepting connections $(secs "$b" "$d") s after the start"
done
logs=$(dk 1 logs pg-node1 2>&1)
grep -q 'received fast shutdown request' <<<"$logs" || fail "node1: docker stop was not a fast shutdown"
ok "node1: docker stop is a fast shutdown (SIGINT)"
lab stop 1 >/dev/null 2>&1
check "lab.sh stop 1: exited" "exited" "$(dk 1 inspect -f '{{.State.Status}}' pg-node1)"
lab start 1 >/dev/null 2>&1
check "lab.sh start 1: serving again, data kept" "1000" "$(lab sql 1 'SELECT count(*) FROM lab_data')"
lab status >/dev/null || fail "lab.sh status failed"
ok "lab.sh status"
check "lab.sh docker 2 ps -a: node2's dockerd" "pg-node2" "$(lab docker 2 ps -a --format '{{.Names}}')"

# down leaves nothing.
a=$EPOCHREALTIME
lab down >/dev/null 2>&1 || fail "lab.sh down failed"
b=$EPOCHREALTIME
echo "down: $(secs "$a" "$b") s"
[ ! -e "$LAB" ] || fail "down: $LAB is left"
! ip netns list | grep -q "^pgrl-$K-" || fail "down: network namespaces are left"
[ -z "$(find /sys/fs/cgroup -type d -name "pgrepl-lab-$K-node*" 2>/dev/null)" ] || fail "down: cgroups are left"
! grep -qF "$LAB/" /proc/[0-9]*/mountinfo 2>/dev/null || fail "down: mounts naming $LAB are left"
! pgrep -f -- "--data-root $LAB/" >/dev/null || fail "down: a dockerd is left"
[ ! -e /etc/docker/key.json ] || fail "down: /etc/docker/key.json exists (a dockerd wrote its key on the host)"
ok "down: no lab directory, namespace, cgroup, mount or dockerd left"
trap - EXIT
echo "all $pass checks passed"
