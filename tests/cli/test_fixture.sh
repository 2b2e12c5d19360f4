#!/usr/bin/env bash
# The test-server fixture: tests/support/with-server (pouchdb, couchdb3fake and couchdb kinds).
# A server must answer while CMD runs, and be gone (process and temp dir) afterwards:
# after success, after failure (status passed through), after SIGINT / SIGTERM to
# with-server, and even after SIGKILL of with-server (parent-death signal).
set -uo pipefail

src=${COUCHLUA_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ws=$src/tests/support/with-server
[[ -x $ws ]] || { echo "FAIL: $ws is not an executable file" >&2; exit 1; }
if [[ ! -f $src/.deps/pouchdb/node_modules/pouchdb-server/bin/pouchdb-server ]]; then
  echo "FAIL: pouchdb-server is not installed in $src/.deps/pouchdb; run scripts/setup" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-fixture.XXXXXX")
strays=()
cleanup() {
  local p
  for p in "${strays[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
export TMPDIR=$work/tmp     # where with-server makes its temp dirs: must end up empty
mkdir -p "$TMPDIR"
unset COUCHLUA_TEST_PORT

checks=0 failures=0
ok()   { checks=$((checks + 1)); }
fail() {
  checks=$((checks + 1)) failures=$((failures + 1))
  printf 'FAIL: %s\n' "$1" >&2
  shift
  local f
  for f in "$@"; do [[ -s $f ]] && sed 's/^/    | /' "$f" >&2; done
}
check() { # DESCRIPTION COMMAND...   (extra context files: set $ctx)
  local what=$1; shift
  if "$@"; then ok; else fail "$what" ${ctx:-}; fi
}

alive() {
  local s
  [[ -n ${1:-} ]] || return 1
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  s=${s##*) }
  [[ ${s%% *} != Z ]]
}
port_open() { (exec {fd}<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# PIDs of pouchdb-server processes listening on PORT (by command line).
servers_on_port() {
  local f cmd
  for f in /proc/[0-9]*/cmdline; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    [[ $cmd == *pouchdb-server* && $cmd == *"--port $1 "* ]] && { f=${f#/proc/}; echo "${f%/cmdline}"; }
  done
}
wait_gone() { # PID SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done
  return 1
}
# Reads "PID DIR PORT" written by a CMD; checks the server is gone everywhere.
expect_server_gone() { # INFOFILE WHEN
  local pid dir port left
  read -r pid dir port <"$1" 2>/dev/null
  if [[ -z ${pid:-} || -z ${dir:-} || -z ${port:-} ]]; then
    fail "$2: CMD did not report the server's pid/dir/port"; return
  fi
  check "$2: server process $pid is gone" eval '! alive "$pid"'
  check "$2: its temp dir $dir is removed" test ! -e "$dir"
  left=$(servers_on_port "$port")
  check "$2: no pouchdb-server process left on port $port (found: ${left:-none})" test -z "$left"
  check "$2: nothing listens on port $port any more" eval '! port_open "$port"'
}
report='echo "$COUCHLUA_TEST_SERVER_PID $COUCHLUA_TEST_SERVER_DIR ${COUCHLUA_TEST_URL##*:}"'

# --- 1. a server that answers, and the environment --------------------------------------
"$ws" pouchdb bash -c '
  '"$report"' >"$1"
  echo "URL=$COUCHLUA_TEST_URL"
  echo "KIND=$COUCHLUA_TEST_SERVER"
  node -e "fetch(process.env.COUCHLUA_TEST_URL).then(r => r.json())
    .then(j => console.log(\"WELCOME=\" + j[\"express-pouchdb\"] + \" \" + j.version))
    .catch(e => console.log(\"FETCH FAILED \" + e))"
' _ "$work/1.info" >"$work/1.out" 2>"$work/1.err"
rc=$?
ctx="$work/1.out $work/1.err"
check "success: exit status is 0 (got $rc)" test "$rc" = 0
check "success: COUCHLUA_TEST_URL is http://127.0.0.1:PORT" grep -qE '^URL=http://127\.0\.0\.1:[0-9]+$' "$work/1.out"
check "success: COUCHLUA_TEST_SERVER is pouchdb" grep -qx 'KIND=pouchdb' "$work/1.out"
check "success: GET / answers pouchdb-server 4.2.0" grep -qx 'WELCOME=Welcome! 4.2.0' "$work/1.out"
ctx=
expect_server_gone "$work/1.info" "after a CMD that succeeds"

# --- 2. stdin reaches CMD --------------------------------------------------------------
out=$(echo "from stdin" | "$ws" pouchdb cat 2>"$work/2.err")
ctx="$work/2.err"
check "stdin is passed to CMD (got '$out')" test "$out" = "from stdin"
ctx=

# --- 3. a CMD that fails: its status is passed through -----------------------------------
"$ws" pouchdb bash -c "$report"' >"$1"; exit 7' _ "$work/3.info" >"$work/3.out" 2>&1
rc=$?
ctx="$work/3.out"
check "failing CMD: exit status 7 is passed through (got $rc)" test "$rc" = 7
ctx=
expect_server_gone "$work/3.info" "after a CMD that fails"

"$ws" pouchdb "$work/no-such-command" >"$work/3b.out" 2>&1
rc=$?
ctx="$work/3b.out"
check "missing CMD: exit status 127 (got $rc)" test "$rc" = 127
ctx=

# --- 4. SIGTERM / SIGINT to with-server while CMD runs -----------------------------------
for sig in TERM INT; do
  n=$(kill -l "$sig")
  info=$work/sig-$sig.info
  # A background job of this script would start with SIGINT ignored; undo that.
  env --default-signal=INT,TERM "$ws" pouchdb bash -c \
    "$report"' >"$1.tmp"; echo $$ >>"$1.tmp"; mv "$1.tmp" "$1"; exec sleep 120' _ "$info" \
    >"$work/sig-$sig.out" 2>&1 &
  wpid=$!
  for ((i = 0; i < 300; i++)); do [[ -s $info ]] && break; alive "$wpid" || break; sleep 0.1; done
  if [[ ! -s $info ]]; then
    fail "$sig: with-server did not start CMD" "$work/sig-$sig.out"
    kill -KILL "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
    continue
  fi
  cmdpid=$(sed -n 2p "$info")
  strays+=("$cmdpid")
  kill -"$sig" "$wpid"
  if wait_gone "$wpid" 15; then ok; else
    fail "SIG$sig: with-server still running 15 s after the signal" "$work/sig-$sig.out"
    kill -KILL "$wpid" 2>/dev/null
  fi
  wait "$wpid"
  rc=$?
  ctx="$work/sig-$sig.out"
  check "SIG$sig: with-server exits with $((128 + n)) (got $rc)" test "$rc" = $((128 + n))
  check "SIG$sig: CMD (pid $cmdpid) was stopped too" eval '! alive "$cmdpid"'
  ctx=
  head -n 1 "$info" >"$info.1"
  expect_server_gone "$info.1" "after SIG$sig to with-server"
done

# --- 5. SIGKILL to with-server (what a ctest timeout does): the server and CMD still go
#        (parent-death signal) and the temp dir is removed ---------------------------------
info=$work/kill.info
mkdir -p "$work/ktmp"
TMPDIR=$work/ktmp "$ws" pouchdb bash -c \
  "$report"' >"$1.tmp"; echo $$ >>"$1.tmp"; mv "$1.tmp" "$1"; exec sleep 120' _ "$info" \
  >"$work/kill.out" 2>&1 &
wpid=$!
for ((i = 0; i < 300; i++)); do [[ -s $info ]] && break; alive "$wpid" || break; sleep 0.1; done
if [[ -s $info ]]; then
  read -r spid sdir _ <"$info"
  cmdpid=$(sed -n 2p "$info")
  strays+=("$cmdpid")
  kill -KILL "$wpid"; wait "$wpid" 2>/dev/null
  if wait_gone "$spid" 10; then ok; else
    fail "SIGKILL: server $spid survived with-server's death by 10 s"; kill -KILL "$spid"
  fi
  if wait_gone "$cmdpid" 10; then ok; else
    fail "SIGKILL: CMD $cmdpid survived with-server's death by 10 s"
  fi
  for ((i = 0; i < 50; i++)); do [[ -e $sdir ]] || break; sleep 0.1; done
  check "SIGKILL: the server's temp dir is removed within 5 s" test ! -e "$sdir"
else
  fail "SIGKILL: with-server did not start CMD" "$work/kill.out"
  kill -KILL "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
fi

# --- 6. a taken COUCHLUA_TEST_PORT: clear error, non-zero exit ----------------------------
"$ws" pouchdb bash -c '
  COUCHLUA_TEST_PORT=${COUCHLUA_TEST_URL##*:} "$1" pouchdb bash -c "echo CMD RAN"
  echo "INNER_RC=$?"
  node -e "fetch(process.env.COUCHLUA_TEST_URL).then(r => console.log(\"OUTER_STATUS=\" + r.status))"
' _ "$ws" >"$work/6.out" 2>&1
rc=$?
ctx="$work/6.out"
check "taken port: the outer run succeeds (got $rc)" test "$rc" = 0
check "taken port: with-server fails (non-zero status)" eval '! grep -qx "INNER_RC=0" "$work/6.out" && grep -q "^INNER_RC=" "$work/6.out"'
check "taken port: CMD is not run" eval '! grep -q "CMD RAN" "$work/6.out"'
check "taken port: the error says the port is already in use" grep -q 'already in use' "$work/6.out"
check "taken port: the first server is unharmed" grep -qx 'OUTER_STATUS=200' "$work/6.out"
ctx=

COUCHLUA_TEST_PORT=not-a-port "$ws" pouchdb true >"$work/6b.out" 2>&1
rc=$?
ctx="$work/6b.out"
check "bad COUCHLUA_TEST_PORT: non-zero exit (got $rc)" test "$rc" != 0
check "bad COUCHLUA_TEST_PORT: says so" grep -q 'not a port number' "$work/6b.out"
ctx=

# --- 7. couchdb kind ----------------------------------------------------------------------
env -u COUCH_TEST_URL "$ws" couchdb bash -c 'echo CMD RAN' >"$work/7.out" 2>&1
rc=$?
ctx="$work/7.out"
check "couchdb without COUCH_TEST_URL: exit 77 (got $rc)" test "$rc" = 77
check "couchdb without COUCH_TEST_URL: says why" grep -q '^SKIPPED: COUCH_TEST_URL is not set' "$work/7.out"
check "couchdb without COUCH_TEST_URL: CMD is not run" eval '! grep -q "CMD RAN" "$work/7.out"'
ctx=

COUCH_TEST_URL='http://admin:s3cr%40t@127.0.0.1:9/' "$ws" couchdb \
  bash -c 'echo "$COUCHLUA_TEST_URL|$COUCHLUA_TEST_SERVER"' >"$work/7b.out" 2>"$work/7b.err"
rc=$?
ctx="$work/7b.out $work/7b.err"
check "couchdb with COUCH_TEST_URL: CMD's status (got $rc)" test "$rc" = 0
check "couchdb with COUCH_TEST_URL: URL and kind exported" \
  grep -qx 'http://admin:s3cr%40t@127.0.0.1:9/|couchdb' "$work/7b.out"
check "couchdb with COUCH_TEST_URL: with-server prints no credentials" eval '! grep -q "s3cr" "$work/7b.err"'
ctx=

# --- 9. couchdb3fake kind: the FAKE CouchDB 3, same life cycle -------------------------
fake_gone() { # INFOFILE WHEN
  local pid port
  read -r pid _ port <"$1" 2>/dev/null
  if [[ -z ${pid:-} || -z ${port:-} ]]; then fail "$2: CMD did not report the fake's pid/port"; return; fi
  if wait_gone "$pid" 10; then ok; else fail "$2: the fake ($pid) is still running"; fi
  check "$2: nothing listens on port $port any more" eval '! port_open "$port"'
}
"$ws" couchdb3fake bash -c '
  echo "$COUCHLUA_TEST_SERVER_PID - ${COUCHLUA_TEST_URL##*:}" >"$1"
  echo "KIND=$COUCHLUA_TEST_SERVER"
  [[ $COUCHLUA_TEST_URL =~ ^http://admin:[0-9a-f]+@127\.0\.0\.1:[0-9]+$ ]] && echo "URL=admin credentials"
  node -e "const u = new URL(process.env.COUCHLUA_TEST_URL);
    const auth = \"Basic \" + Buffer.from(u.username + \":\" + u.password).toString(\"base64\");
    fetch(u.origin + \"/_all_dbs\", { headers: { Authorization: auth } }).then(r => r.json())
      .then(j => console.log(\"DBS=\" + j.join(\",\"))).catch(e => console.log(\"FETCH FAILED \" + e))"
  exit 5
' _ "$work/9.info" >"$work/9.out" 2>"$work/9.err"
rc=$?
ctx="$work/9.out $work/9.err"
check "couchdb3fake: CMD's status is passed through (got $rc)" test "$rc" = 5
check "couchdb3fake: COUCHLUA_TEST_SERVER is couchdb3fake" grep -qx 'KIND=couchdb3fake' "$work/9.out"
check "couchdb3fake: COUCHLUA_TEST_URL carries admin credentials" grep -qx 'URL=admin credentials' "$work/9.out"
check "couchdb3fake: the admin is let in (GET /_all_dbs)" grep -qx 'DBS=_replicator,_users' "$work/9.out"
ctx=
fake_gone "$work/9.info" "couchdb3fake after CMD"

info=$work/9k.info
"$ws" couchdb3fake bash -c \
  'echo "$COUCHLUA_TEST_SERVER_PID $COUCHLUA_TEST_SERVER_DIR ${COUCHLUA_TEST_URL##*:}" >"$1.tmp"; mv "$1.tmp" "$1"; exec sleep 120' _ "$info" \
  >"$work/9k.out" 2>&1 &
wpid=$!
for ((i = 0; i < 300; i++)); do [[ -s $info ]] && break; alive "$wpid" || break; sleep 0.1; done
if [[ -s $info ]]; then
  kill -KILL "$wpid"; wait "$wpid" 2>/dev/null
  fake_gone "$info" "couchdb3fake after SIGKILL of with-server"
  read -r _ sdir _ <"$info"
  for ((i = 0; i < 50; i++)); do [[ -e $sdir ]] || break; sleep 0.1; done
  check "couchdb3fake after SIGKILL: its temp dir is removed within 5 s" test ! -e "$sdir"
else
  fail "couchdb3fake: with-server did not start CMD" "$work/9k.out"
  kill -KILL "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
fi

# --- 8. usage ----------------------------------------------------------------------------
"$ws" >"$work/8.out" 2>&1; rc=$?
check "no arguments: usage, exit 2 (got $rc)" test "$rc" = 2
"$ws" mysql true >"$work/8b.out" 2>&1; rc=$?
ctx="$work/8b.out"
check "unknown kind: exit 2 (got $rc)" test "$rc" = 2
check "unknown kind: says so" grep -q "unknown server kind 'mysql'" "$work/8b.out"
ctx=

# --- no temp dirs left -------------------------------------------------------------------
left=$(ls -A "$TMPDIR")
check "no temp dir left behind (found: ${left:-none})" test -z "$left"

if ((failures)); then
  echo "$failures of $checks checks failed"
  exit 1
fi
echo "all $checks checks passed"
