#!/bin/bash
# couchlua(1): the page the build makes (man/couchlua.1.in with the version filled in)
# renders with groff -man -ww without a warning, and stays in step with the program: every
# option of `couchlua --help`, every exit status it lists, and every environment variable
# the sources read (getenv in src/, os.getenv in lua/) are in it.
. "$(dirname "$0")/check.sh"
. "$(dirname "$0")/pkg_lib.sh"
: "${COUCHLUA_BUILD_DIR:?}" "${COUCHLUA_SOURCE_DIR:?}"
need groff groff-base
page="$COUCHLUA_BUILD_DIR/man/couchlua.1"
checks=$((checks + 1))
if [ ! -f "$page" ]; then
  fail "no $page (the build makes it)"
  finish
fi

run groff -man -Tutf8 -ww -z "$page" </dev/null
expect_rc 0 "groff -man -Tutf8 -ww renders the page"
expect_err "" "groff -man -ww has no warning"
run env MANWIDTH=80 groff -man -Tutf8 -P-cbou -rLL=80n "$page" </dev/null
text=$out
version=$(project_version)
expect_in text "couchlua $version" "the page shows the project's version"
for section in NAME SYNOPSIS DESCRIPTION OPTIONS "THE REPL" ENVIRONMENT "EXIT STATUS" FILES EXAMPLES "SEE ALSO"; do
  checks=$((checks + 1))
  printf '%s\n' "$text" | grep -qx "$section" || fail "no $section section"
done

# Sections of the rendered text, by heading.
section() { printf '%s\n' "$text" | awk -v s="$1" '/^[A-Z]/ { on = ($0 == s) } on'; }
options=$(section OPTIONS)
run "$COUCHLUA" --help </dev/null
help=$out
for opt in $(printf '%s\n' "$help" | sed -n 's/^  \(-[^ ]*\).*/\1/p' | sort -u); do
  checks=$((checks + 1))
  printf '%s\n' "$options" | grep -qE -- "^ +$opt( |$)" || fail "option $opt of --help is not in OPTIONS"
done
status=$(section "EXIT STATUS")
for code in $(printf '%s\n' "$help" | grep -oE '\b(0|1|2|130) [a-z(]' | cut -d' ' -f1); do
  checks=$((checks + 1))
  printf '%s\n' "$status" | grep -qE "^ +$code( |$)" || fail "exit status $code of --help is not in EXIT STATUS"
done
env_section=$(section ENVIRONMENT)
vars=$(grep -rhoE '(os\.)?getenv\("[A-Za-z_0-9]+"' "$COUCHLUA_SOURCE_DIR/src" "$COUCHLUA_SOURCE_DIR/lua" |
  sed 's/.*"\(.*\)"/\1/' | sort -u)
for var in $vars LUA_INIT COUCH_URL; do
  expect_in env_section "$var" "ENVIRONMENT names $var"
done
files=$(section FILES)
expect_in files "~/.couchlua_history" "FILES names the REPL history"

finish
