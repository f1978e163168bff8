D=$1; TS=$2; B="$D.pgrepl-building"
if [ -e "$B" ]; then rm -rf -- "$B" || exit 1; fi
if [ ! -e "$D" ]; then mkdir -p "$(dirname "$D")" && echo building; exit 0; fi
if [ -d "$D" ] && [ -z "$(ls -A "$D")" ]; then echo direct; exit 0; fi
echo occupied
