# Helpers for the command-line tests tests/cli/test_{cli,repl,module_so,install}.sh (sourced).
#   run CMD...            runs CMD (the caller redirects its stdin, usually </dev/null)
#                         sets $out, $err (text) and $rc
#   expect_rc N WHAT      $rc must be N
#   expect_out TEXT WHAT  $out must equal TEXT;   expect_err likewise for $err
#   expect_in VAR PATTERN WHAT   the variable's text must contain the fixed string PATTERN
#   finish                exit 1 if anything failed, else 0
: "${COUCHLUA:?COUCHLUA must be the path of the couchlua binary}"

failures=0
checks=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

run() {
  "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}

fail() {
  failures=$((failures + 1))
  printf 'FAIL: %s\n' "$1" >&2
  printf '  stdout: %s\n' "$out" | sed -n '1,30p' >&2
  printf '  stderr: %s\n' "$err" | sed -n '1,30p' >&2
  printf '  rc: %s\n' "$rc" >&2
}

expect_rc() {
  checks=$((checks + 1))
  [ "$rc" = "$1" ] || fail "$2: exit status $rc, expected $1"
}

expect_out() {
  checks=$((checks + 1))
  [ "$out" = "$1" ] || fail "$2: stdout is not '$1'"
}

expect_err() {
  checks=$((checks + 1))
  [ "$err" = "$1" ] || fail "$2: stderr is not '$1'"
}

expect_in() {
  checks=$((checks + 1))
  case "${!1}" in
  *"$2"*) ;;
  *) fail "$3: $1 lacks '$2'" ;;
  esac
}

expect_not_in() {
  checks=$((checks + 1))
  case "${!1}" in
  *"$2"*) fail "$3: $1 has '$2'" ;;
  esac
}

finish() {
  if [ "$failures" -gt 0 ]; then
    echo "$failures of $checks checks failed" >&2
    exit 1
  fi
  echo "all $checks checks passed"
  exit 0
}

# The ASan runtime to LD_PRELOAD into a program that is not sanitized itself (stock lua5.4,
# a plain cc build) when it loads our sanitized code from $1; empty for a normal build.
asan_preload_for() {
  if ldd "$1" 2>/dev/null | grep -q 'libasan'; then
    if [ -n "${COUCHLUA_ASAN_PRELOAD:-}" ]; then
      echo "$COUCHLUA_ASAN_PRELOAD"
    else
      readlink -f "$(cc -print-file-name=libasan.so)"
    fi
  fi
}
