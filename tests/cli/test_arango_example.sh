#!/usr/bin/env bash
# examples/arango_to_couch.lua end to end: the FAKE ArangoDB (tests/fakes/fake_arango.js)
# as the source, a pouchdb-server (tests/support/with-server) -- and a real CouchDB too when
# COUCH_TEST_URL is set -- as the target. Checks the progress lines, the documents that
# arrive (count, content, 64-bit integers, the "arango" metadata), a re-run that updates in
# place (and logs in with a JWT), several chunks with a small --chunk-size, an unknown
# collection (exit 1, message), and that every dump batch is deleted afterwards.
set -uo pipefail

src=${COUCHLUA_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
couchlua=${COUCHLUA:-$src/build/couchlua}
export COUCHLUA=$couchlua COUCHLUA_SOURCE_DIR=$src

command -v node >/dev/null || { echo "SKIPPED: node is not installed (the fake ArangoDB runs on node)"; exit 77; }
[[ -x $couchlua ]] || { echo "SKIPPED: no couchlua binary at $couchlua (build first)"; exit 77; }
if [[ ! -f $src/.deps/pouchdb/node_modules/pouchdb-server/bin/pouchdb-server ]]; then
  echo "SKIPPED: pouchdb-server is not installed in $src/.deps/pouchdb; run scripts/setup"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-arango-example.XXXXXX")
fake_pid=
cleanup() {
  exec 3>&- 2>/dev/null
  [[ -n $fake_pid ]] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The fake reads a fifo this script holds open on fd 3: it exits when the script ends.
mkfifo "$work/stdin"
node "$src/tests/fakes/fake_arango.js" '{"generate": {"_system": {"products": 300}}}' \
  <"$work/stdin" >"$work/fake.out" 2>&1 &
fake_pid=$!
exec 3>"$work/stdin"
port=
for ((i = 0; i < 150; i++)); do
  port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$work/fake.out")
  [[ -n $port ]] && break
  sleep 0.1
done
[[ -n $port ]] || { echo "FAIL: the fake ArangoDB did not start:" >&2; cat "$work/fake.out" >&2; exit 1; }
fake_url=http://127.0.0.1:$port

# What must be in CouchDB afterwards, checked with couchlua itself.
cat >"$work/check.lua" <<'EOF'
local couch = require "couch"
local url, dbname, expected, fake_url = arg[1], arg[2], tonumber(arg[3]), arg[4]
local db = couch.connect(url):db(dbname)
local info = db:info()
assert(info.doc_count == expected, ("doc_count %s, expected %d"):format(tostring(info.doc_count), expected))
local doc = db:get("k000007")
assert(doc.n == 7 and doc.name == "item 7", "content of k000007")
assert(doc.tags[1] == "t0", "tags of k000007")
assert(math.type(doc.nested.big) == "integer" and doc.nested.big == 9007199254740991, "a 2^53-1 integer survives")
assert(doc.nested.ratio == 0.1, "a float survives")
assert(doc.arango.id == "products/k000007" and type(doc.arango.rev) == "string", "the arango metadata")
assert(doc._key == nil, "_key became _id")
local state = couch.connect(fake_url):request("GET", "/_fake/state")
assert(#state.batches == 0, ("%d dump batches left on the ArangoDB side"):format(#state.batches))
print("check ok: " .. expected .. " documents")
EOF

checks=0 failures=0
fail() { failures=$((failures + 1)); printf 'FAIL: %s\n' "$1" >&2; [[ -n ${2:-} && -f $2 ]] && sed 's/^/    | /' "$2" >&2; }
check() { checks=$((checks + 1)); local what=$1 out=$2; shift 2; "$@" >"$out" 2>&1 || fail "$what" "$out"; }
contains() { grep -q -- "$2" "$1"; }

run_against() { # KIND: one round of checks against that server
  local kind=$1 out=$work/$1
  mkdir -p "$out"
  # shellcheck disable=SC2016
  "$src/tests/support/with-server" "$kind" bash -c '
    set -u
    couch_url=$COUCHLUA_TEST_URL out=$1 fake_url=$2 src=$3
    db=arango_products_$RANDOM$RANDOM
    arango="http://root:secret@${fake_url#http://}"
    "$COUCHLUA" "$src/examples/arango_to_couch.lua" "$arango" products "$couch_url" "$db" --chunk-size 6000 \
      >"$out/run1.out" 2>&1 || { echo "run 1 exited $?"; cat "$out/run1.out"; exit 1; }
    "$COUCHLUA" "$out/../check.lua" "$couch_url" "$db" 300 "$fake_url" >"$out/check1.out" 2>&1 \
      || { cat "$out/check1.out"; exit 1; }
    # again, with a JWT and one big chunk: the same documents, updated in place
    "$COUCHLUA" "$src/examples/arango_to_couch.lua" "$arango" products "$couch_url" "$db" --jwt \
      >"$out/run2.out" 2>&1 || { echo "run 2 exited $?"; cat "$out/run2.out"; exit 1; }
    "$COUCHLUA" "$out/../check.lua" "$couch_url" "$db" 300 "$fake_url" >"$out/check2.out" 2>&1 \
      || { cat "$out/check2.out"; exit 1; }
    # an unknown collection: exit 1 and a message naming it
    "$COUCHLUA" "$src/examples/arango_to_couch.lua" "$arango" nope "$couch_url" "$db" >"$out/run3.out" 2>&1
    echo "$?" >"$out/run3.rc"
    "$COUCHLUA" "$out/../check.lua" "$couch_url" "$db" 300 "$fake_url" >"$out/check3.out" 2>&1 \
      || { cat "$out/check3.out"; exit 1; }
    DB=$db "$COUCHLUA" -e "require(\"couch\").connect(os.getenv(\"COUCHLUA_TEST_URL\")):delete_db(os.getenv(\"DB\"))" \
      >/dev/null 2>&1 || true
  ' _ "$out" "$fake_url" "$src" >"$out/with-server.out" 2>&1
  local rc=$?
  if [[ $kind == couchdb && $rc == 77 ]]; then echo "skipped the real-CouchDB round (COUCH_TEST_URL is not set)"; return; fi
  checks=$((checks + 1))
  if [[ $rc != 0 ]]; then fail "$kind: the example runs and its documents check out (exit $rc)" "$out/with-server.out"; return; fi
  check "$kind: run 1 says which batch it dumps" "$out/c1" contains "$out/run1.out" "dump batch [0-9]* at tick [0-9]*"
  check "$kind: run 1 reports progress chunk by chunk" "$out/c2" contains "$out/run1.out" "^chunk 3: [0-9]* docs written"
  check "$kind: run 1 ends with a summary" "$out/c3" contains "$out/run1.out" "copied 300 documents from ArangoDB _system/products"
  check "$kind: run 1 used several chunks" "$out/c4" grep -Eq "\(([5-9]|[1-9][0-9]+) chunks, 0 errors\)" "$out/run1.out"
  check "$kind: run 2 logs in with a JWT" "$out/c5" contains "$out/run2.out" "(auth: jwt)"
  check "$kind: run 2 copies everything again without conflicts" "$out/c6" contains "$out/run2.out" "copied 300 documents.*0 errors"
  check "$kind: no credentials in the output" "$out/c7" bash -c "! grep -q secret '$out/run1.out' '$out/run2.out' '$out/run3.out'"
  check "$kind: an unknown collection exits 1" "$out/c8" grep -qx 1 "$out/run3.rc"
  check "$kind: an unknown collection is named" "$out/c9" contains "$out/run3.out" "no collection 'nope'"
}

run_against pouchdb
run_against couchdb

if ((failures > 0)); then
  echo "$failures of $checks checks failed" >&2
  exit 1
fi
echo "ok: $checks checks"
