D=$1; B=$2; C=$3; P=$4
emit() { n=$1; shift; if out=$("$@" 2>/dev/null | base64 -w0); then printf '%s %s\n' "$n" "$out"; fi; }
nl='
'
mgr() { printf 'manager %s %s\n' "$1" "$2"; }
# A live repmgrd whose repmgr.conf (its -f, else repmgr's own search: its
# working directory, then /etc) names $D; one whose file cannot be read
# may be this node's, and counts. Paths are read as the repmgrd sees them
# (through /proc/PID/root when this user may): a repmgrd in another mount
# namespace on the same kernel (a container, another node of a lab) names
# its own data directory, which is this one only if it is the same inode.
repmgrd_of() {
  for f in /proc/[0-9]*/comm; do
    c=; read -r c 2>/dev/null <"$f" || continue
    [ "$c" = repmgrd ] || continue
    q=${f%/comm}; n=${q#/proc/}; conf=; prev=; st=
    read -r st 2>/dev/null <"$q/stat"
    case ${st##*) } in Z*|X*) continue ;; esac
    args=$(tr '\0' '\n' 2>/dev/null <"$q/cmdline") || continue
    while IFS= read -r a; do
      case $prev in -f|--config-file) conf=$a ;; esac
      case $a in --config-file=*) conf=${a#*=} ;; -f?*) conf=${a#-f} ;; esac
      prev=$a
    done <<ARGS
$args
ARGS
    r=; [ -r "$q/root/." ] && [ -x "$q/root/." ] && r=$q/root
    case $conf in
      '') for conf in "$q/cwd/repmgr.conf" "$r/etc/repmgr.conf" ''; do [ -f "$conf" ] && break; done ;;
      /*) conf=$r$conf ;;
      *) conf=$q/cwd/$conf ;;
    esac
    shown=${conf#"$q/cwd/"}; [ "$shown" = "$conf" ] || shown="$shown in its working directory"
    [ -z "$r" ] || shown=${shown#"$r"}
    case $shown in *"$nl"*) shown='(a path with a newline)' ;; esac
    if [ -z "$conf" ] || ! [ -r "$conf" ]; then
      mgr repmgrd "repmgrd (pid $n) runs on this host and its repmgr.conf ${shown:-(not found)} cannot be read to tell which data directory it manages"
      continue
    fi
    v=
    while IFS= read -r l || [ -n "$l" ]; do
      k=${l%%=*}; k=${k#"${k%%[![:space:]]*}"}; k=${k%"${k##*[![:space:]]}"}
      [ "$k" = data_directory ] || continue
      v=${l#*=}; v=${v#"${v%%[![:space:]]*}"}
      case $v in
        \'*) v=${v#\'}; v=${v%%\'*} ;;
        \"*) v=${v#\"}; v=${v%%\"*} ;;
        *) v=${v%%[[:space:]#]*} ;;
      esac
    done <"$conf"
    while [ "${v%/}" != "$v" ]; do v=${v%/}; done
    dd=$D; while [ "${dd%/}" != "$dd" ]; do dd=${dd%/}; done
    if [ -n "$r" ] && [ "${v#/}" != "$v" ]; then
      theirs=$(stat -L -c %d:%i -- "$r$v" 2>/dev/null) || continue
      [ "$theirs" = "$ours" ] || continue
      v=$dd
    fi
    if [ -n "$v" ] && { [ "$v" = "$dd" ] || [ "$v" = "$phys" ]; }; then
      mgr repmgrd "repmgrd (pid $n) runs for this data directory (data_directory in $shown)"
    fi
  done
}
phys=
if cd -P -- "$D" 2>/dev/null; then phys=$PWD; cd /; fi
ours=$(stat -L -c %d:%i -- "$D" 2>/dev/null)
if [ "${5-}" = repmgrd ]; then repmgrd_of; exit 0; fi
if [ -f "$D/PG_VERSION" ]; then
  echo "datadir initialised"
  case $phys in ''|*"$nl"*) ;; *) echo "datadir_physical $phys" ;; esac
  v=; read -r v 2>/dev/null <"$D/PG_VERSION"; echo "major $v"
  [ -e "$D/standby.signal" ] && echo "standby_signal 1"
  [ -e "$D/recovery.signal" ] && echo "recovery_signal 1"
  live=0; pid=
  [ -f "$D/postmaster.pid" ] && read -r pid 2>/dev/null <"$D/postmaster.pid"
  # In a one-off container (PGREPL_OFFLINE=1, the node's own is stopped)
  # the pid names a process of this container, never the server.
  [ "${PGREPL_OFFLINE-}" = 1 ] && pid=
  case $pid in ''|*[!0-9]*) ;; *) kill -0 "$pid" 2>/dev/null && live=1 ;; esac
  echo "postmaster_live $live"
  h1=; h2=
  [ -f "$C/postgresql.conf" ] && { read -r h1; read -r h2; } 2>/dev/null <"$C/postgresql.conf"
  case "$h1 $h2" in *"overwritten by Patroni"*) mgr patroni "postgresql.conf begins with Patroni's header (It will be overwritten by Patroni!)" ;; esac
  [ -f "$D/patroni.dynamic.json" ] && mgr patroni "patroni.dynamic.json is in the data directory"
  [ -f "$C/postgresql-auto-failover.conf" ] && mgr pg_auto_failover "postgresql-auto-failover.conf is beside postgresql.conf"
  if [ $live = 1 ]; then
    # /proc/PID/stat: the command name (field 2) may hold spaces and
    # parentheses; the parent's pid is the second field after the last `)`.
    st=; read -r st 2>/dev/null <"/proc/$pid/stat"
    set -- ${st##*)}
    pp=${2-}
    case $pp in ''|*[!0-9]*) ;; *)
      pc=; pa=
      read -r pc 2>/dev/null <"/proc/$pp/comm"
      case $pc in
        patroni) mgr patroni "the postmaster's parent process is patroni (pid $pp)" ;;
        pg_autoctl) mgr pg_auto_failover "the postmaster's parent process is pg_autoctl (pid $pp)" ;;
        # `python3 -m patroni`: only then the command line, which the
        # shell reads a byte per system call (NULs dropped).
        python*|pypy*)
          read -r pa 2>/dev/null <"/proc/$pp/cmdline"
          case $pa in *patroni*) mgr patroni "the postmaster's parent process (pid $pp) runs patroni" ;; esac ;;
      esac ;;
    esac
  else
    emit controldata env LC_ALL=C "$B/pg_controldata" "$D"
    # The hba_file the configuration names (the one the server will read,
    # and apply writes), else the default beside postgresql.conf.
    H=
    [ -x "$B/postgres" ] && H=$("$B/postgres" -C hba_file -D "$C" 2>/dev/null)
    case $H in ''|*"$nl"*) H=$C/pg_hba.conf ;; /*) ;; *) H=$D/$H ;; esac
    [ -f "$H" ] && emit hba cat "$H"
    [ -f "$D/postgresql.auto.conf" ] && emit auto_conf cat "$D/postgresql.auto.conf"
    for f in "$D"/pg_wal/*.history; do [ -f "$f" ] && emit "history:${f##*/}" cat "$f"; done
    n=0
    for f in "$D"/pg_replslot/*; do case $f in *.tmp) ;; *) [ -d "$f" ] && n=$((n + 1)) ;; esac; done
    echo "replslots $n"
    if [ -n "${6-}" ]; then
      echo "preload_checked"
      L=
      for d in "$("$B/pg_config" --pkglibdir 2>/dev/null)" "${B%/bin}/lib" "${B%/bin}/lib/postgresql" "${B%/bin}/lib64"; do
        [ -n "$d" ] && [ -f "$d/plpgsql.so" ] && { L=$d; break; }
      done
      if [ -n "$L" ]; then
        case $L in *"$nl"*) ;; *) echo "pkglibdir $L" ;; esac
        i=0
        while IFS= read -r l; do
          case $l in
            '$libdir/'*) f=$L/${l#'$libdir/'} ;;
            */*) f=$l ;;
            *) f=$L/$l ;;
          esac
          [ -f "$f" ] || [ -f "$f.so" ] || echo "preload_missing $i"
          i=$((i + 1))
        done <<LIBS
$6
LIBS
      fi
    fi
    repmgrd_of
  fi
elif [ ! -e "$D" ]; then echo "datadir missing"
else
  dd=empty
  # A file, or a directory this user cannot list, is nothing to build into.
  { [ -d "$D" ] && [ -r "$D" ] && [ -x "$D" ]; } || dd=foreign
  [ $dd = empty ] && for f in "$D"/* "$D"/.[!.]* "$D"/..?*; do
    if [ -e "$f" ] || [ -L "$f" ]; then dd=foreign; break; fi
  done
  echo "datadir $dd"
fi
if [ "$C" != "$D" ]; then
  if [ -f "$C/postgresql.conf" ]; then echo "config_dir_has_conf 1"; else echo "config_dir_has_conf 0"; fi
fi
p=$D; while [ ! -e "$p" ]; do case $p in */*) p=${p%/*}; [ -n "$p" ] || p=/ ;; *) p=/ ;; esac; done
stat -f -c 'fs %S %b %a' "$p" 2>/dev/null
if [ -f "$P" ]; then
  h=$(sha256sum <"$P") && echo "passfile_sha256 ${h%% *}"
  stat -c 'passfile_mode %a' "$P"
fi
for f in "${P%/*}"/.pgrepl-*.pgpass; do
  { [ "$f" = "$P" ] || ! [ -f "$f" ]; } && continue
  n=${f##*/.pgrepl-}; n=${n%.pgpass}
  case $n in ''|*[!a-z0-9_-]*) continue ;; esac
  IFS= read -r h 2>/dev/null <"$f" || continue
  [ "$h" = "# pgrepl passfile: cluster $n, data directory $D" ] && echo "stale_cluster $n"
done
for f in "${P%/*}"/.pgrepl-*.lock.holder; do
  n=${f##*/.pgrepl-}; n=${n%.lock.holder}
  { [ "${P%/*}/.pgrepl-$n.pgpass" = "$P" ] || ! [ -f "$f" ]; } && continue
  case $n in ''|*[!a-z0-9_-]*) continue ;; esac
  while IFS= read -r h; do
    [ "$h" = "data_dir=$D" ] && { echo "stale_cluster $n"; break; }
  done 2>/dev/null <"$f"
done
[ -e "$D.pgrepl-rewinding" ] && echo "rewind_interrupted 1"
[ -d "$D.pgrepl-building" ] && du -sb -- "$D.pgrepl-building" 2>/dev/null | { read -r s _; echo "building_bytes $s"; }
exit 0
