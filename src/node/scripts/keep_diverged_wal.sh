D=$1; T=$2; FIRST=$3; OUT=$4; LAST=${5:-}
cd "$D/pg_wal" || exit 1
# A fresh directory: OUT, else OUT.2, OUT.3, ... (a rerun within the same
# second names the same OUT); an existing one is never written into.
base=$OUT; i=1
until mkdir -m 700 -- "$OUT" 2>/dev/null; do
  [ -e "$OUT" ] && [ "$i" -lt 100 ] || { mkdir -m 700 -- "$OUT"; exit 1; }
  i=$((i + 1)); OUT=$base.$i
done
fail() { rm -rf -- "$OUT"; exit 1; }
from=$((0x${FIRST#"$T"})); n=0
to=; [ -n "$LAST" ] && to=$((0x${LAST#"$T"}))
for f in *; do
  case $f in
    *.history) cp -p -- "$f" "$OUT/" || fail ;;
    "$T"????????????????|"$T"????????????????.partial)
      r=${f#"$T"}; r=${r%.partial}
      case $r in *[!0-9A-F]*) continue ;; esac
      [ $((0x$r)) -ge "$from" ] || continue
      [ -n "$to" ] && [ $((0x$r)) -gt "$to" ] && continue
      [ -e "$FIRST" ] && [ "$FIRST" -nt "$f" ] && continue
      cp -p -- "$f" "$OUT/" || fail
      n=$((n + 1))
      ;;
  esac
done
echo "$n $OUT"
