#!/usr/bin/env bash
# couchlua-backup / couchlua-restore (examples/couchlua-backup.lua, installed under both
# names): --help, couchbackup's options and exit codes, a backup piped into a restore,
# --log/--resume, and no credentials in any output. Runs under a fresh pouchdb-server.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../support/under-pouchdb.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-backup-cmd.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# the script runs through its #! line, as installed: couchlua on PATH, the two names linked
ln -s "$src/examples/couchlua-backup.lua" "$tmp/couchlua-backup"
ln -s "$src/examples/couchlua-backup.lua" "$tmp/couchlua-restore"
export PATH="$(dirname "$COUCHLUA"):$tmp:$PATH"
unset COUCH_URL COUCH_DATABASE COUCH_MODE
export COUCH_URL=$COUCHLUA_TEST_URL

failures=0 current=
fail() { failures=$((failures + 1)); printf 'FAIL: %s: %s\n  stdout| %s\n  stderr| %s\n' "$current" "$1" "${out:0:400}" "$err" >&2; }
run() { # run WHAT EXPECTED_RC CMD...
  current=$1; local want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  out=$(cat "$tmp/out"); err=$(cat "$tmp/err")
  [[ $rc == "$want" ]] || fail "exit $rc, expected $want"
  [[ $out$err != *s3cretpw* ]] || fail "the password appears in the output"
}

couchlua -e '
local couch = require "couch"
local srv = couch.connect(os.getenv("COUCHLUA_TEST_URL"))
local db = srv:db("cmd_src"); db:create()
local docs = {}
for i = 1, 25 do docs[i] = { _id = ("d%02d"):format(i), n = i } end
db:bulk_docs(docs)
srv:db("cmd_dst"):create()
srv:db("cmd_dst2"):create()' || { echo "FAIL: setup" >&2; exit 1; }

run "backup --help" 0 couchlua-backup --help
[[ $out == *"--buffer-size"* && $out == *"Exit codes"* ]] || fail "help lacks the options or exit codes"
run "restore --help" 0 couchlua-restore --help
[[ $out == *"new_edits=false"* ]] || fail "restore help"
run "unknown option" 2 couchlua-backup --db cmd_src --bogus
run "no database" 2 couchlua-backup
run "bad mode" 2 couchlua-backup --db cmd_src --mode deep
run "wrong credentials" 11 couchlua-backup --url "${COUCHLUA_TEST_URL/:\/\//://bkuser:s3cretpw@}" --db cmd_src -q
[[ $err == *unauthorized* ]] || fail "the error does not say unauthorized"
run "missing database" 10 couchlua-backup --db no_such_db_here -q
run "resume without log" 20 couchlua-backup --db cmd_src --resume --output "$tmp/x"
run "resume with a missing log" 21 couchlua-backup --db cmd_src --resume --log "$tmp/nolog" --output "$tmp/x"

current="backup | restore"
couchlua-backup --db cmd_src -b 10 -q 2>"$tmp/err1" | couchlua-restore --db cmd_dst -q 2>"$tmp/err2"
st=("${PIPESTATUS[@]}")
[[ ${st[0]} == 0 && ${st[1]} == 0 ]] || { err=$(cat "$tmp/err1" "$tmp/err2"); fail "exit ${st[*]}"; }
n=$(couchlua -e 'print(require("couch").connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_dst"):info().doc_count)')
[[ $n == 25 ]] || fail "restored $n documents, expected 25"

run "restore into a database that is not empty" 13 couchlua-restore --db cmd_dst -q </dev/null

run "backup with a log" 0 couchlua-backup --db cmd_src -b 10 --log "$tmp/log" --output "$tmp/bk.json"
[[ $err == *"finished, 25 documents"* ]] || fail "no progress/summary on stderr"
grep -q '^:changes_complete' "$tmp/log" || fail "the log lacks :changes_complete"
run "log exists without --resume" 23 couchlua-backup --db cmd_src --log "$tmp/log" --output "$tmp/bk.json"
run "resume a finished backup" 0 couchlua-backup --db cmd_src --log "$tmp/log" --resume --output "$tmp/bk.json" -q
run "restore --input" 0 couchlua-restore --db cmd_dst2 --input "$tmp/bk.json" -q
n=$(couchlua -e 'print(require("couch").connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_dst2"):info().doc_count)')
[[ $n == 25 ]] || fail "restored $n documents from the resumed file, expected 25"

printf '{"name":"couchlua","version":"0","mode":"full","attachments":false}\n[{"_id":"a"}\n' >"$tmp/bad.json"
couchlua -e 'require("couch").connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_dst3"):create()'
run "corrupt file" 1 couchlua-restore --db cmd_dst3 --input "$tmp/bad.json" -q
[[ $err == *"line 2"* ]] || fail "the error does not name the line"

if ((failures)); then echo "$failures failure(s)" >&2; exit 1; fi
echo "ok"
