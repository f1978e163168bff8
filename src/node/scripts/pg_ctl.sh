B=$1; D=$2; W=$3; V=$4; L=$5
case $V in
restart)
  # A server pgrepl started once with other values (-c pgrepl.once=1):
  # pg_ctl restart would keep them; a stop and a plain start drop them.
  if grep -q 'pgrepl\.once=1' "$D/postmaster.opts" 2>/dev/null; then
    "$B/pg_ctl" stop -D "$D" -m fast -w -t "$W" || exit
    exec "$B/pg_ctl" start -D "$D" -W -l "$L"
  fi
  exec "$B/pg_ctl" restart -D "$D" -m fast -W -l "$L" ;;
start) exec "$B/pg_ctl" start -D "$D" -W -l "$L" ;;
start-once) exec "$B/pg_ctl" start -D "$D" -W -l "$L" -o "$6" ;;
esac
pid=; read -r pid 2>/dev/null <"$D/postmaster.pid"
"$B/pg_ctl" stop -D "$D" -m fast -W || exit
read -r up _ </proc/uptime; until=$(( ${up%.*} + W ))
while [ -e "$D/postmaster.pid" ]; do
  case $pid in ''|*[!0-9]*) ;; *) kill -0 "$pid" 2>/dev/null || exit 0 ;; esac
  read -r up _ </proc/uptime
  [ "${up%.*}" -ge "$until" ] && { echo "pg_ctl: server does not shut down within ${W}s" >&2; exit 1; }
  sleep 0.01
done
