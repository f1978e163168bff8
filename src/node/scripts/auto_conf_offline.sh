D=$1; SIG=$2; NAMES=$3; shift 3
A="$D/postgresql.auto.conf"
{ [ -f "$A" ] && grep -v -i -E "^[[:space:]]*($NAMES)[[:space:]]*=" "$A"
  while [ $# -ge 2 ]; do printf '%s = %s\n' "$1" "$2"; shift 2; done; } | put "$A" 600 || exit 1
if [ "$SIG" = 1 ] && ! [ -f "$D/standby.signal" ]; then put "$D/standby.signal" 600 </dev/null || exit 1; fi
exit 0
