# Sourced first by shell tests that need a server (tests/cli/test_{examples,docs,followers}.sh):
# sets src and COUCHLUA (exported), and unless COUCHLUA_TEST_URL already names a server,
# re-runs the calling script under tests/support/with-server pouchdb (a fresh
# pouchdb-server), or exits 77 (skipped, with the reason) when node or pouchdb-server is
# missing.
src=${COUCHLUA_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
COUCHLUA=${COUCHLUA:-$src/build/couchlua}
export COUCHLUA_SOURCE_DIR=$src COUCHLUA

if [[ -z ${COUCHLUA_TEST_URL:-} ]]; then
  if ! command -v node >/dev/null 2>&1 ||
    [[ ! -f $src/.deps/pouchdb/node_modules/pouchdb-server/bin/pouchdb-server ]]; then
    echo "SKIPPED: node or pouchdb-server is not installed (scripts/setup installs them)"
    exit 77
  fi
  exec "$src/tests/support/with-server" pouchdb bash "${BASH_SOURCE[1]}" "$@"
fi
[[ -x $COUCHLUA ]] || { echo "FAIL: COUCHLUA ($COUCHLUA) is not an executable" >&2; exit 1; }
