F=$1
if [ -e "$F" ]; then put "$F.pgrepl-bak" --reference="$F" < "$F" || exit 1; M=--reference=$F; else M=600; fi
put "$F" "$M"
