D=$1; SIG=$2; NAMES=$3; shift 3
A="$D/postgresql.auto.conf"
T="$A.pgrepl-new"
{ [ -f "$A" ] && grep -v -i -E "^[[:space:]]*($NAMES)[[:space:]]*=" "$A"
  while [ $# -ge 2 ]; do printf '%s = %s\n' "$1" "$2"; shift 2; done; } > "$T" || exit 1
chmod 600 "$T" && mv -f "$T" "$A" || exit 1
if [ "$SIG" = 1 ]; then touch "$D/standby.signal" || exit 1; fi
exit 0
