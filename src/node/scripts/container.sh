# pgrepl-container ENGINE CONTAINER USER COMMAND [ARGS...]: runs COMMAND as
# USER in CONTAINER when it runs (ENGINE exec), else in a one-off container
# of its image (by ID, never pulled) with its volumes and bind mounts
# (--volumes-from), on the host's network, the image's entrypoint bypassed,
# labelled as CONTAINER's, PGREPL_OFFLINE=1 in its environment (nothing
# else: no secret ever travels in argv or environment; stdin passes
# through). Whether it runs is asked once, here, so that one SSH round trip
# does both. An engine that cannot say is exit 125 with a line beginning
# `pgrepl-container:`.
e=$1; c=$2; u=$3; shift 3
s=$("$e" container inspect -f '{{.State.Running}} {{.Image}}' -- "$c" 2>/dev/null) || {
  # Asked again for the reason alone, on one line.
  why=$("$e" container inspect -f . -- "$c" 2>&1 >/dev/null | tr '\n' ' ')
  echo "pgrepl-container: $e cannot inspect container $c: $why" >&2
  exit 125
}
case $s in
  "true "*) exec "$e" exec -i -u "$u" -- "$c" "$@" ;;
esac
p=$1; shift
exec "$e" run --rm -i --pull never --network host -u "$u" --volumes-from "$c" \
  --label "pgrepl.offline-for=$c" -e PGREPL_OFFLINE=1 --entrypoint "$p" -- "${s#* }" "$@"
