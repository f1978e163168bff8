# put FILE MODE: stdin into a fresh temporary file beside FILE (mktemp: a
# new name, created exclusively, so a symlink planted there is never
# followed), MODE (octal, or --reference=OTHER), fsynced, then renamed
# over FILE (a symlink at FILE is replaced, not followed).
put() {
  _t=$(mktemp -- "$1.pgrepl-XXXXXX") || return 1
  if cat > "$_t" && chmod "$2" "$_t" && sync -- "$_t" && mv -f -- "$_t" "$1"; then return 0; fi
  rm -f -- "$_t"; return 1
}
