L=$1; shift
if [ -e "$L" ]; then
  exec 9>>"$L" || exit 71
  flock -n 9 || { echo "its lock is held: $(cat "$L.holder" 2>/dev/null)" >&2; exit 75; }
fi
rm -f -- "$@"
