stop_orphans() {
  me=$(readlink /proc/$$/ns/mnt)
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    c=; read -r c 2>/dev/null <"$p/comm" || continue
    case $c in pg_basebackup|pg_rewind) ;; *) continue ;; esac
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$me" ] || continue
    case $(tr '\000' ' ' <"$p/cmdline" 2>/dev/null) in *"$1"*) ;; *) continue ;; esac
    echo "stopping $c (pid $pid) left running by an interrupted pgrepl" >&2
    kill "$pid" 2>/dev/null
    n=0
    while kill -0 "$pid" 2>/dev/null; do
      n=$((n + 1)); [ $n -ge 1000 ] && { kill -9 "$pid" 2>/dev/null; break; }
      sleep 0.01
    done
  done
}
stop_orphans "$1"
