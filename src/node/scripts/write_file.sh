F=$1
T="$F.pgrepl-new"
cat > "$T" || exit 1
if [ -e "$F" ]; then chmod --reference="$F" "$T" && cp -p "$F" "$F.pgrepl-bak" || exit 1; fi
mv -f "$T" "$F"
