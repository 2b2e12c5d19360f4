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
[[ $err == *"backup cmd_src -> $tmp/bk.json: 25 docs, 3 batches"*" done"* ]] || fail "no progress line on stderr"
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

run "restore a file of a newer format" 1 couchlua-restore --db cmd_dst3 -q --input <(printf '%s\n' \
  '{"attachments":true,"format":"couchlua-all-revisions","format_version":99,"name":"couchlua","revisions":"all","version":"9"}' '[]')
[[ $err == *"line 1"* && $err == *"newer"* ]] || fail "the error does not say the format is newer"
run "restore into a missing database" 10 couchlua-restore --db no_such_db_here -q --input "$tmp/bk.json"
run "backup to a full disk" 1 couchlua-backup --db cmd_src -q --output /dev/full
[[ $err == */dev/full* ]] || fail "the error does not name the file"
printf '{"name":"couchlua","version":"0","mode":"full","attachments":true}\n[{"_id":"s","_rev":"1-s","_attachments":{"a.txt":{"stub":true}}}]\n' >"$tmp/stub.json"
run "a stub in a file that says it holds attachments" 1 couchlua-restore --db cmd_dst3 --input "$tmp/stub.json" -q
[[ $err == *"line 2"* && $err == *"a.txt"* ]] || fail "the error does not name the line and the attachment"
run "shallow backup in parallel" 0 couchlua-backup --db cmd_src -m shallow -b 4 -p 3 -q --output "$tmp/sh.json"
[[ $(grep -c '^\[' "$tmp/sh.json") == 7 ]] || fail "the shallow file has $(grep -c '^\[' "$tmp/sh.json") lines, expected 7"
run "backup --revisions with --mode shallow" 2 couchlua-backup --db cmd_src --revisions all --mode shallow

# lossless: a conflict and a deletion survive backup | restore
couchlua -e '
local couch = require "couch"
local db = couch.connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_src")
db:bulk_docs({ { _id = "d01", _rev = "1-feedbeef", other = true } }, { new_edits = false })
local d = db:get("d02"); db:delete_doc("d02", d._rev)
couch.connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_all"):create()' || fail "lossless setup"
current="backup --revisions all | restore"
couchlua-backup --db cmd_src --revisions all -b 7 -p 3 -q 2>"$tmp/err1" | couchlua-restore --db cmd_all -q 2>"$tmp/err2"
st=("${PIPESTATUS[@]}")
[[ ${st[0]} == 0 && ${st[1]} == 0 ]] || { err=$(cat "$tmp/err1" "$tmp/err2"); fail "exit ${st[*]}"; }
out=$(couchlua -e '
local db = require("couch").connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_all")
local deleted = 0   -- pouchdb-server has no doc_del_count: from _changes
for _, ch in ipairs(db:changes().results) do if ch.deleted then deleted = deleted + 1 end end
print(db:info().doc_count, deleted, #db:get("d01", { conflicts = true })._conflicts)')
[[ $out == $'24\t1\t1' ]] || fail "restored (docs, deleted, conflicts) = $out, expected 24 1 1"

# restore with a log: a finished one resumes to nothing; the log must not be overwritten
couchlua -e 'require("couch").connect(os.getenv("COUCHLUA_TEST_URL")):db("cmd_dst4"):create()'
run "restore with a log" 0 couchlua-restore --db cmd_dst4 --input "$tmp/bk.json" --log "$tmp/rlog" -b 4
grep -q '^:restore_complete 25$' "$tmp/rlog" || fail "the restore log is not complete: $(tail -2 "$tmp/rlog")"
run "restore log exists without --resume" 23 couchlua-restore --db cmd_dst4 --input "$tmp/bk.json" --log "$tmp/rlog"
run "resume a finished restore" 0 couchlua-restore --db cmd_dst4 --input "$tmp/bk.json" --log "$tmp/rlog" --resume
[[ $err == *"finished, 0 documents (25 restored before)"* ]] || fail "resume of a finished restore"
run "restore --resume without --log" 20 couchlua-restore --db cmd_dst4 --resume --input "$tmp/bk.json"

if ((failures)); then echo "$failures failure(s)" >&2; exit 1; fi
echo "ok"
