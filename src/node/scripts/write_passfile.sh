F=$1
umask 077
T="$F.pgrepl-new"
cat > "$T" && chmod 600 "$T" && mv -f "$T" "$F"
