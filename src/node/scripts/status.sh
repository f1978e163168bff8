B=$1; D=$2
if [ "${PGREPL_OFFLINE-}" = 1 ]; then
  # A one-off container beside a stopped one: its server does not run,
  # whatever postmaster.pid says (its PID 1 is this container's, not the
  # server's); pg_ctl's codes, 3 stopped, 4 no data directory.
  if [ -f "$D/PG_VERSION" ]; then r=3; else r=4; fi
else
  "$B/pg_ctl" status -D "$D" >/dev/null 2>&1; r=$?
fi
if [ -e "$D/standby.signal" ]; then echo "$r standby"; else echo "$r"; fi
