# pgBouncer poolers of the pgrepl lab, sourced by lab/lab.sh (--poolers N,
# or PGREPL_LAB_POOLERS). Each pooler J is a machine of its own, like a
# node: network namespace pgrl-K-pJ, address 198.18.K.(10 + NODES + J), its
# own mount, UTS and IPC namespaces and sshd (logins as postgres), and
# Debian's pgbouncer run as postgres with transaction pooling. On a --sudo
# lab pgrepl logs in to a pooler as the administrator and sudoes to
# postgres, as on the nodes (its cluster file entry says exec); on a docker
# lab, whose SSH user is the nodes' docker user, it logs in as postgres.
#
# Inside pooler J, standard paths are backed by its own directories:
#   /etc/pgbouncer        <- LABDIR/pgbJ/etc   (pgbouncer.ini, userlist.txt; owned by postgres)
#   /var/run/postgresql   <- LABDIR/pgbJ/run   (the admin console's socket, the pid file)
#   /var/log/postgresql   <- LABDIR/pgbJ/log   (pgbouncer.log)
#   /var/lib/postgresql   <- LABDIR/pgbJ/home
#
# Clients authenticate with SCRAM against auth_file, which holds the role
# lab_app's SCRAM verifier as PostgreSQL stores it (never its password);
# pgBouncer then logs in to the servers with the client's SCRAM keys. The
# password is in LABDIR/env (PGREPL_LAB_APP_PASSWORD), for clients only.
# The admin console takes `pgbouncer` over the Unix socket from postgres
# (the user pgbouncer runs as), without a password.

POOLERS=${PGREPL_LAB_POOLERS:-0}
PGB_PORT=6432

pooler_ns() { echo "pgrl-$K-p$1"; }
# The user pgrepl logs in to a pooler as (the only one its sshd lets in).
pooler_ssh_user() { if [ -e "$LAB/sudo" ]; then echo "$ADMIN_USER"; else echo "$PG_USER"; fi; }
pooler_veth() { echo "pgrl-$K-p$1"; }
# Addresses after the nodes': $1 = J, $2 = the number of nodes.
pooler_addr() { echo "$NET.$((10 + $2 + $1))"; }

check_poolers_option() {
	[[ $POOLERS =~ ^[0-9]{1,2}$ ]] && [ "$((10#$POOLERS))" -le 20 ] || die "--poolers must be 0..20 (got '$POOLERS')"
	POOLERS=$((10#$POOLERS))
	[ "$((10 + NODES + POOLERS))" -le 254 ] || die "--nodes $NODES and --poolers $POOLERS do not fit in $NET.0/24"
}

# Debian's pgbouncer, without starting its host service.
install_pgbouncer() {
	command -v pgbouncer >/dev/null && return 0
	local created_policy= rc=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	log "installing pgbouncer"
	{
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold pgbouncer ||
			{ apt-get update -q && apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold pgbouncer; }
	} >&2 || rc=$?
	[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
	[ $rc = 0 ] || die "apt-get install pgbouncer failed"
}

pooler_pid() {
	local j=$1 pid
	pid=$(cat "$LAB/pgb$j/sshd.pid" 2>/dev/null) || die "pgb$j: its sshd is not running"
	[[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$LAB/pgb$j/sshd_config" ||
		die "pgb$j: its sshd (pid $pid) is not running"
	echo "$pid"
}

# Run a command as postgres inside pooler $1's namespaces.
pooler_exec() {
	local j=$1 pid
	shift
	pid=$(pooler_pid "$j")
	exec nsenter -t "$pid" -n -m -u -i --wdns=/var/lib/postgresql -- \
		setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- \
		env -i HOME=/var/lib/postgresql USER="$PG_USER" LOGNAME="$PG_USER" SHELL=/bin/bash \
		LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/bin "$@"
}
pooler_run() { (pooler_exec "$@"); }

pooler_index() {
	local j=${1:-}
	j=${j#pgb}
	[[ $j =~ ^[0-9]+$ ]] || die "bad pooler '$1' (use a number or pgbN)"
	j=$((10#$j))
	[ -d "$LAB/pgb$j" ] || die "lab $K has no pooler $j"
	echo "$j"
}

write_pooler_ini() {
	local j=$1 addr=$2
	cat >"$LAB/pgb$j/etc/pgbouncer.ini" <<EOF
; pgBouncer of pgrepl lab $K, pgb$j, written by lab/lab.sh up.
; pgrepl manages a block of [databases] lines; nothing else here is its.
[databases]

[pgbouncer]
listen_addr = $addr
listen_port = $PGB_PORT
unix_socket_dir = /var/run/postgresql
auth_type = scram-sha-256
auth_file = /etc/pgbouncer/userlist.txt
admin_users = pgbouncer
pool_mode = transaction
max_client_conn = 200
default_pool_size = 10
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
pidfile = /var/run/postgresql/pgbouncer.pid
logfile = /var/log/postgresql/pgbouncer.log
EOF
}

start_pooler() {
	local j=$1 nodes=$2 d=$LAB/pgb$1 ns veth addr
	ns=$(pooler_ns "$j")
	veth=$(pooler_veth "$j")
	addr=$(pooler_addr "$j" "$nodes")
	mkdir -p "$d"
	echo "$addr" >"$d/addr"
	install -d -o "$PG_USER" -g "$PG_USER" -m 0755 "$d/home" "$d/log" "$d/etc"
	install -d -o "$PG_USER" -g "$PG_USER" -m 2775 "$d/run"
	ssh-keygen -q -t ed25519 -N '' -C "pgb$j.lab$K" -f "$d/ssh_host_ed25519_key"
	echo "$addr $(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >>"$LAB/known_hosts"
	write_pooler_ini "$j" "$addr"
	install -o "$PG_USER" -g "$PG_USER" -m 0600 /dev/null "$d/etc/userlist.txt"
	chown "$PG_USER:$PG_USER" "$d/etc/pgbouncer.ini"
	cat >"$d/sshd_config" <<EOF
# sshd of pgrepl lab $K, pgb$j ($addr), started by lab/lab.sh
Port 22
ListenAddress $addr
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $LAB/authorized_keys
StrictModes no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AllowUsers $(pooler_ssh_user)
PermitRootLogin no
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
UseDNS no
EOF
	# Resolving its own name, as a sudo node does (sudo warns otherwise).
	[ ! -e "$LAB/sudo" ] || { cat /etc/hosts; echo "$addr pgb$j"; } >"$d/hosts"
	ip netns add "$ns"
	ip link add "$veth" type veth peer name "${veth}x"
	ip link set "${veth}x" netns "$ns"
	ip link set "$veth" master "$BRIDGE" up
	ip -n "$ns" link set "${veth}x" name eth0
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	ip netns exec "$ns" unshare --mount --uts --ipc --propagation private sh -c '
		set -e
		hostname "pgb$2"
		mount -t tmpfs -o mode=0755,size=16m pgrepl-lab-run /run
		mkdir -m 0755 /run/sshd /run/postgresql
		mount --bind "$1/home" /var/lib/postgresql
		mount --bind "$1/run" /run/postgresql
		mount --bind "$1/log" /var/log/postgresql
		mkdir -p /etc/pgbouncer
		mount --bind "$1/etc" /etc/pgbouncer
		[ ! -f "$1/hosts" ] || mount --bind "$1/hosts" /etc/hosts
		exec /usr/sbin/sshd -f "$1/sshd_config" -E "$1/sshd.log"
	' sh "$d" "$j" </dev/null >>"$d/sshd.log" 2>&1 || {
		cat "$d/sshd.log" >&2
		die "pgb$j: could not start sshd"
	}
}

# psql ARGS as postgres on node1, whatever its kind (stdin passes through).
node1_psql() {
	if [ "$(node_kind 1)" = docker ]; then
		dk 1 exec -i -u postgres -w /var/lib/postgresql "$(docker_container 1)" \
			psql -XAtq -h /var/run/postgresql -d postgres "$@"
	else
		node_run 1 psql -XAtq -d postgres "$@"
	fi
}

# The role clients use through the poolers, and its SCRAM verifier in
# every pooler's auth_file.
pooler_app_role() {
	local pw verifier j
	pw=$(random_password)
	(umask 077 && printf 'export PGREPL_LAB_APP_PASSWORD=%s\n' "$pw" >>"$LAB/env")
	printf "SET password_encryption = 'scram-sha-256'; CREATE ROLE lab_app LOGIN PASSWORD '%s'; GRANT ALL ON lab_data TO lab_app; GRANT ALL ON SEQUENCE lab_data_id_seq TO lab_app;\n" "$pw" |
		node1_psql -v ON_ERROR_STOP=1 >&2
	verifier=$(node1_psql -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'lab_app'")
	[[ $verifier == SCRAM-SHA-256* ]] || die "lab_app has no SCRAM verifier"
	for j in $(seq 1 "$POOLERS"); do
		printf '"lab_app" "%s"\n' "$verifier" >"$LAB/pgb$j/etc/userlist.txt"
	done
}

append_pooler_config() {
	local nodes=$1 j
	{
		cat <<EOF

[pgbouncer]
ini = "/etc/pgbouncer/pgbouncer.ini"
admin_socket_dir = "/var/run/postgresql"
port = $PGB_PORT
admin_user = "pgbouncer"
pause_timeout = "5s"

[pgbouncer.databases]
lab = { dbname = "postgres", to = "primary" }
lab_ro = { dbname = "postgres", to = "standbys" }
EOF
		for j in $(seq 1 "$POOLERS"); do
			printf '\n[poolers.pgb%d]\nhost = "%s"\n' "$j" "$(pooler_addr "$j" "$nodes")"
			if [ -e "$LAB/sudo" ]; then
				printf 'exec = { sudo = "%s" }\n' "$PG_USER"
			elif [ "$(lab_ssh_user)" != "$PG_USER" ]; then
				printf '\n[poolers.pgb%d.ssh]\nuser = "%s"\n' "$j" "$PG_USER"
			fi
		done
		cat <<EOF

[[hba]]
type = "host"
database = "postgres"
user = "lab_app"
address = "$NET.0/24"
method = "scram-sha-256"
EOF
	} >>"$LAB/pgrepl.toml"
}

poolers_up() {
	local nodes=$1 j
	[ "$POOLERS" -gt 0 ] || return 0
	echo "$POOLERS" >"$LAB/poolers"
	for j in $(seq 1 "$POOLERS"); do start_pooler "$j" "$nodes"; done
	for j in $(seq 1 "$POOLERS"); do
		wait_pidfile "$LAB/pgb$j/sshd.pid" || { cat "$LAB/pgb$j/sshd.log" >&2; die "pgb$j: sshd did not start"; }
		printf 'Host pgb%d\n  HostName %s\n' "$j" "$(pooler_addr "$j" "$nodes")" >>"$LAB/ssh_config"
	done
	pooler_app_role
	for j in $(seq 1 "$POOLERS"); do
		pooler_run "$j" pgbouncer -q -d /etc/pgbouncer/pgbouncer.ini >&2 || {
			cat "$LAB/pgb$j/log/pgbouncer.log" >&2
			die "pgb$j: pgbouncer did not start"
		}
		wait_pidfile "$LAB/pgb$j/run/pgbouncer.pid" || die "pgb$j: pgbouncer wrote no pid file"
	done
	append_pooler_config "$nodes"
	log "$POOLERS pgBouncer pooler(s) up (port $PGB_PORT, transaction pooling; role lab_app, password in $LAB/env)"
}

# Every pooler there is: from the lab dir and from the namespaces.
poolers_down() {
	local j ns n=0 pid pids t
	[ -f "$LAB/poolers" ] && n=$(cat "$LAB/poolers")
	for ns in $(ip netns list | awk '{print $1}' | grep -E "^pgrl-$K-p[0-9]+$" || true); do
		j=${ns##*-p}
		[ "$j" -gt "$n" ] && n=$j
	done
	for j in $(seq 1 "$n"); do
		ns=$(pooler_ns "$j")
		if ip netns list | grep -q "^$ns\( \|$\)"; then
			for t in $(seq 1 300); do
				local live=()
				for pid in $(ns_pids "$ns"); do alive "$pid" && live+=("$pid"); done
				[ ${#live[@]} -eq 0 ] && break
				if [ "$t" -lt 100 ]; then kill -TERM "${live[@]}" 2>/dev/null || true; else kill -KILL "${live[@]}" 2>/dev/null || true; fi
				sleep 0.01
			done
		fi
		if ip link show "$(pooler_veth "$j")" >/dev/null 2>&1; then ip link del "$(pooler_veth "$j")" && did=1; fi
		if ip netns list | grep -q "^$ns\( \|$\)"; then ip netns del "$ns" && did=1; fi
	done
}

# lab.sh pooler-* commands: $1 the command, then its arguments.
pooler_command() {
	local cmd=$1 j
	shift
	need_root
	j=$(pooler_index "${1:-}")
	shift
	case $cmd in
	pooler-exec) [ $# -ge 1 ] || die "usage: $PROG pooler-exec J CMD [ARGS...]"; pooler_exec "$j" "$@" ;;
	pooler-admin) pooler_exec "$j" psql -XAt -h /var/run/postgresql -p "$PGB_PORT" -U pgbouncer -d pgbouncer -c "${1:?usage: $PROG pooler-admin J 'SHOW DATABASES'}" ;;
	pooler-cut) ip link set "$(pooler_veth "$j")" down; log "pgb$j cut" ;;
	pooler-heal) ip link set "$(pooler_veth "$j")" up; log "pgb$j healed" ;;
	pooler-addr) cat "$LAB/pgb$j/addr" ;;
	esac
}
