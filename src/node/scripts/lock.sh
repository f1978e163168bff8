L=$1; H=$2; C=$3; K=$4; D=$5
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
printf 'pid=%s\nclient=%s\nholder=%s\ndata_dir=%s\n' "$$" "$C" "$H" "$D" > "$L.holder"
echo locked
while IFS= read -r _; do touch "$L.holder"; done
