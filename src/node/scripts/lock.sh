L=$1; H=$2; C=$3; K=$4; D=$5; M=${6-}; B=${7-}; N=${8-}; S=${9-}
# The lock file itself is made by a hard link of a fresh file (which never
# replaces nor follows what is there), and must not be a symlink.
if ! [ -e "$L" ] && ! [ -L "$L" ]; then
  t=$(mktemp -- "$L.pgrepl-XXXXXX") && { ln -- "$t" "$L" 2>/dev/null; rm -f -- "$t"; }
fi
[ -L "$L" ] && { echo "$L is a symbolic link" >&2; exit 71; }
exec 9>>"$L" || exit 71
if ! flock -n 9; then
  if [ -n "$K" ]; then
    kill "$K" 2>/dev/null
    flock -w 5 9 || { echo "held"; cat "$L.holder" 2>/dev/null; exit 75; }
  else
    echo "held"; echo "age=$(( $(date +%s) - $(stat -c %Y "$L.holder" 2>/dev/null || date +%s) ))"
    cat "$L.holder" 2>/dev/null; exit 75
  fi
fi
# Who holds it: the machine, boot, pid namespace, pid and start time of the
# pgrepl that asked come before the free text, so the text cannot forge them.
printf 'pid=%s\nclient=%s\nmachine_id=%s\nboot_id=%s\npid_ns=%s\nclient_start=%s\nholder=%s\ndata_dir=%s\n' \
  "$$" "$C" "$M" "$B" "$N" "$S" "$H" "$D" | put "$L.holder" 600 || exit 71
echo locked
# Each line read renews the lease, and says so: pgrepl counts the lock lost
# when no renewal is acknowledged in time.
while IFS= read -r _; do touch -c -- "$L.holder" && echo renewed; done
