B=$1; D=$2
"$B/pg_ctl" status -D "$D" >/dev/null 2>&1; r=$?
if [ -e "$D/standby.signal" ]; then echo "$r standby"; else echo "$r"; fi
