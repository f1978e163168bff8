# pgrepl-container-orphans ENGINE CONTAINER: removes (by force) the one-off
# containers an interrupted pgrepl left working on CONTAINER's volumes (a
# pg_basebackup or pg_rewind), found by their label; says each on stderr.
e=$1; c=$2
ids=$("$e" ps -q --filter "label=pgrepl.offline-for=$c") || exit 1
for id in $ids; do
  echo "removing one-off container $id left working on $c's volumes by an interrupted pgrepl" >&2
  "$e" rm -f -- "$id" >/dev/null || exit 1
done
