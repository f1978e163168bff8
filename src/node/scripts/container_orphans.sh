# pgrepl-container-orphans ENGINE CONTAINER: removes (by force) the one-off
# containers an interrupted pgrepl left working on CONTAINER's volumes (a
# pg_basebackup or pg_rewind), found by their label; says each on stderr,
# and waits (30 s at most) until they are gone: one whose own `--rm` is
# already removing it is only waited for.
e=$1; c=$2
ids=$("$e" ps -aq --filter "label=pgrepl.offline-for=$c") || exit 1
[ -n "$ids" ] || exit 0
for id in $ids; do
  echo "removing one-off container $id left working on $c's volumes by an interrupted pgrepl" >&2
  "$e" rm -f -- "$id" >/dev/null 2>&1
done
n=0
while left=$("$e" ps -aq --filter "label=pgrepl.offline-for=$c") && [ -n "$left" ]; do
  n=$((n + 1))
  [ $n -le 300 ] || { echo "one-off containers still there after 30 s: $left" >&2; exit 1; }
  sleep 0.1
done
