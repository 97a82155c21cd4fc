# dgr shell helpers, sourced by /dgr/bin/prestart and by build scripts:
#   . /dgr/bin/functions.sh
# Written for busybox sh (ash). Debian's busybox-static is built with
# FEATURE_SH_STANDALONE, so the applets used here (chmod, printf, [) run from busybox
# itself whatever PATH holds: the helpers work in an image with nothing but /dgr.
# Every helper avoids command substitution (a fork each) so that sourcing costs nothing.

# _dgr_level_of LEVEL: set _dgr_level to the number of a level name, case-insensitive
# (FATAL 0, PANIC 1, ERROR 2, WARN/WARNING 3, INFO 4, DEBUG 5, TRACE 6, anything else 4).
_dgr_level_of() {
  case "$1" in
    [Ff][Aa][Tt][Aa][Ll]) _dgr_level=0 ;;
    [Pp][Aa][Nn][Ii][Cc]) _dgr_level=1 ;;
    [Ee][Rr][Rr][Oo][Rr]) _dgr_level=2 ;;
    [Ww][Aa][Rr][Nn] | [Ww][Aa][Rr][Nn][Ii][Nn][Gg]) _dgr_level=3 ;;
    [Dd][Ee][Bb][Uu][Gg]) _dgr_level=5 ;;
    [Tt][Rr][Aa][Cc][Ee]) _dgr_level=6 ;;
    *) _dgr_level=4 ;;
  esac
}

# The current level, from LOG_LEVEL (default INFO), as the original dgr exposes it.
_dgr_level_of "${LOG_LEVEL:-INFO}"
log_level=$_dgr_level

# isLevelEnabled LEVEL: true when LEVEL is at or above the verbosity of LOG_LEVEL.
#   isLevelEnabled debug && set -x
isLevelEnabled() {
  _dgr_level_of "$1"
  [ "$_dgr_level" -le "$log_level" ]
}

# Colour only on a terminal: logs, pipes and files get plain text.
_dgr_colour() {
  if [ -t 1 ]; then printf '\033[0;%sm%s\033[0m\n' "$1" "$2"; else printf '%s\n' "$2"; fi
}

echo_green() { _dgr_colour 32 "$*"; }

echo_red() { _dgr_colour 31 "$*"; }

echo_purple() { _dgr_colour 35 "$*"; }

# execute_files DIR: run the regular files of DIR (not recursive, dotfiles skipped) in
# lexicographic order, each executed directly (its shebang decides), made executable if
# needed. Stops at the first failure, names the script and its exit code on stderr, and
# returns 1. A missing or empty DIR is fine. With DGR_SCRIPT_TIMEOUT set (seconds), a
# script still running after that long is killed, and said to have timed out.
execute_files() {
  local dir="$1" file rc
  [ -d "$dir" ] || return 0
  for file in "$dir"/*; do
    [ -f "$file" ] || continue
    [ -x "$file" ] || chmod +x "$file" 2>/dev/null || true
    isLevelEnabled info && echo_green "Running script -> $file"
    rc=0
    if [ -n "${DGR_SCRIPT_TIMEOUT:-}" ]; then
      timeout -s KILL "$DGR_SCRIPT_TIMEOUT" "$file" || rc=$?
      if [ "$rc" -eq 137 ]; then
        echo_red "Script timed out -> $file (after ${DGR_SCRIPT_TIMEOUT}s)" >&2
        return 1
      fi
    else
      "$file" || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
      echo_red "Script failed -> $file (exit $rc)" >&2
      return 1
    fi
  done
  return 0
}
