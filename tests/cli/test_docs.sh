#!/usr/bin/env bash
# Every fenced ```lua block of README.md and docs/*.md runs as its own couchlua script
# against a fresh pouchdb-server (COUCH_URL), must exit 0 within 60 s, and prints what the
# document shows where it shows output. Blocks marked <!-- doctest: couchdb3 --> run
# against the fake CouchDB 3 and <!-- doctest: arango --> get the fake ArangoDB. The
# conventions are in docs/doctest.md; the runner is tests/support/doctest.lua.
#
# With COUCH_TEST_URL set (a real CouchDB 3, admin credentials in the URL) every block
# runs a second time against it (couchdb3 blocks too: a real CouchDB has /_scheduler);
# the databases the blocks created there are deleted afterwards.
#
#   DOCTEST_ONLY=docs/api.md:120 bash tests/cli/test_docs.sh    one block (file:line)
#
# Exits 77 (skipped) when node or pouchdb-server is missing.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/../support/under-pouchdb.sh"
export LUA_PATH="$src/tests/support/?.lua;;"

cd "$src" || exit 1
docs=(README.md docs/*.md)
status=0

# The runner itself: each way a block can be wrong is reported, with its file and line.
selfcheck() {
  local tmp out rc
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-doctest-self.XXXXXX")
  cat >"$tmp/bad.md" <<'MD'
```lua
print(1 + 1)          --> 3
```

<!-- doctest: skip: needs a real Cloudant -->
```lua
error("not run")
```

```lua
error("boom")
```

```lua
while true do end
```

```lua
print("rev 1-abc")    --> rev <...>
```

<!-- doctest: exit: 2 -->
```lua
print("fine")
```

```lua
print("a")
print("b")
```

```output
a
...
c
```
MD
  printf '<!-- doctest: nonsense -->\n```lua\nprint(1)\n```\n' >"$tmp/directive.md"
  out=$(env -u DOCTEST_ONLY DOCTEST_TIMEOUT=2 "$COUCHLUA" tests/support/doctest.lua "$tmp/bad.md" "$tmp/directive.md" 2>&1)
  rc=$?
  local want=(
    "FAIL $tmp/bad.md:1: output differs"
    "SKIP $tmp/bad.md:6: needs a real Cloudant"
    "FAIL $tmp/bad.md:10: exit status 1, expected 0"
    "bad.md:11: boom"
    "FAIL $tmp/bad.md:14: did not end within 2 s"
    "ok   $tmp/bad.md:18"
    "FAIL $tmp/bad.md:23: exit status 0, expected 2"
    "FAIL $tmp/bad.md:27: output differs"
    "FAIL $tmp/directive.md:1: unknown doctest directive 'nonsense'"
    "6 blocks run, 5 failed, 1 skipped, 1 files could not be read"
  )
  local w bad=0
  [[ $rc == 1 ]] || { echo "FAIL: the runner's self-check: exit status $rc, expected 1" >&2; bad=1; }
  for w in "${want[@]}"; do
    [[ $out == *"$w"* ]] || { echo "FAIL: the runner's self-check: no '$w' in its output" >&2; bad=1; }
  done
  ((bad)) && printf '%s\n' "$out" | sed 's/^/    | /' >&2
  rm -rf "$tmp"
  return $bad
}
echo "== the runner's self-check"
selfcheck || status=1

echo "== against ${COUCHLUA_TEST_SERVER:-the test server} at COUCHLUA_TEST_URL"
COUCH_URL=$COUCHLUA_TEST_URL "$COUCHLUA" tests/support/doctest.lua "${docs[@]}" || status=1

if [[ -n ${COUCH_TEST_URL:-} && ${COUCHLUA_TEST_SERVER:-} == pouchdb ]]; then
  echo "== against COUCH_TEST_URL (a real CouchDB)"
  # what exists before, so that only what the blocks made is removed after
  list_dbs='local s = require("couch").connect(os.getenv("COUCH_URL"))
    for _, n in ipairs(s:all_dbs()) do print(n) end'
  before=$(COUCH_URL=$COUCH_TEST_URL "$COUCHLUA" -e "$list_dbs") || { echo "FAIL: COUCH_TEST_URL does not answer" >&2; exit 1; }
  COUCH_URL=$COUCH_TEST_URL DOCTEST_COUCHDB3_URL=$COUCH_TEST_URL \
    "$COUCHLUA" tests/support/doctest.lua "${docs[@]}" || status=1
  BEFORE=$before COUCH_URL=$COUCH_TEST_URL "$COUCHLUA" -e '
    local s = require("couch").connect(os.getenv("COUCH_URL"))
    local keep = {}
    for n in os.getenv("BEFORE"):gmatch("[^\n]+") do keep[n] = true end
    for _, n in ipairs(s:all_dbs()) do if not keep[n] then s:delete_db(n) end end'
fi
exit $status
