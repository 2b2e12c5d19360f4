# shellcheck shell=bash
# Shared shell helpers for scripts/setup, scripts/test, scripts/demo and
# tests/support/with-server. Source it; it defines functions and a few variables
# and runs nothing.
#
#   couchlua_deps [EXTRA_PKG...]     check/install the Debian packages
#   couchlua_pouchdb_install         npm ci pouchdb-server 4.2.0 into .deps/pouchdb + patch
#   couchlua_couchbackup_install     npm ci @cloudant/couchbackup 2.11.12 into .deps/couchbackup
#   couchlua_pouchdb_peer_install    npm ci pouchdb 9.0.0 (the client-side peer) into .deps/pouchdb-peer
#   couchlua_build DIR [CMAKE_ARG...] configure DIR once (with the args), then build it
#   couchlua_pouchdb_start [--detach] start a server; sets COUCHLUA_POUCHDB_URL, _PID, _DIR, _PORT
#   couchlua_pouchdb_stop [PID DIR]  stop it by PID (TERM, then KILL) and remove its temp dir
#   couchlua_run_with_pouchdb CMD... start a server, run CMD with COUCHLUA_TEST_URL set,
#                                    always stop the server; returns CMD's status
#   couchlua_run_then_stop FN CMD... run CMD, then FN (stop its server), also on signals
#   couchlua_redact_url URL          URL with any user:password@ replaced by ***@

COUCHLUA_ROOT=${COUCHLUA_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
COUCHLUA_POUCHDB_VERSION=4.2.0
COUCHLUA_POUCHDB_SRC=$COUCHLUA_ROOT/tests/support/pouchdb
COUCHLUA_POUCHDB_HOME=$COUCHLUA_ROOT/.deps/pouchdb
COUCHLUA_POUCHDB_BIN=$COUCHLUA_POUCHDB_HOME/node_modules/pouchdb-server/bin/pouchdb-server
COUCHLUA_PROG=${COUCHLUA_PROG:-$(basename "$0")}

COUCHLUA_APT_PACKAGES=(liblua5.4-dev lua5.4 libcurl4-openssl-dev lua-cjson lua-cjson-dev
  libyajl-dev libssl-dev openssl lua-unit libedit-dev cmake pkg-config build-essential nodejs npm
  # packaging and its tests: cpack's dpkg-shlibdeps, the rockspec, the man page, lintian
  dpkg-dev luarocks groff-base man-db lintian)

couchlua_err() { printf '%s: %s\n' "$COUCHLUA_PROG" "$*" >&2; }
couchlua_die() { couchlua_err "error: $*"; exit 1; }

couchlua_redact_url() {
  local u=$1
  if [[ $u =~ ^([A-Za-z][A-Za-z0-9+.-]*://)[^/]*@(.*)$ ]]; then
    u="${BASH_REMATCH[1]}***@${BASH_REMATCH[2]}"
  fi
  printf '%s\n' "$u"
}

# --- Debian packages -------------------------------------------------------------------

# Prints the missing packages among "$@", one per line.
couchlua_missing_packages() {
  local -A have=()
  local pkg status
  while read -r pkg status; do
    [[ $status == ii* ]] && have[$pkg]=1
  done < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "$@" 2>/dev/null)
  for pkg in "$@"; do
    [[ -n ${have[$pkg]:-} ]] && continue
    # NodeSource's nodejs package bundles npm (and conflicts with Debian's npm):
    # a working node / npm command counts as installed.
    [[ $pkg == nodejs ]] && command -v node >/dev/null && continue
    [[ $pkg == npm ]] && command -v npm >/dev/null && continue
    printf '%s\n' "$pkg"
  done
}

couchlua_deps() {
  local missing
  mapfile -t missing < <(couchlua_missing_packages "${COUCHLUA_APT_PACKAGES[@]}" "$@")
  ((${#missing[@]})) || return 0
  if ((EUID != 0)); then
    couchlua_err "missing Debian packages: ${missing[*]}"
    couchlua_err "install them with:"
    printf '  sudo apt-get install %s\n' "${missing[*]}" >&2
    exit 1
  fi
  couchlua_err "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || couchlua_die "apt-get update failed"
  apt-get install -y -q "${missing[@]}" >/dev/null || couchlua_die "apt-get install ${missing[*]} failed"
  mapfile -t missing < <(couchlua_missing_packages "${COUCHLUA_APT_PACKAGES[@]}" "$@")
  ((${#missing[@]} == 0)) || couchlua_die "still missing after apt-get install: ${missing[*]}"
}

# --- pouchdb-server --------------------------------------------------------------------

# couchlua_npm_install SRC HOME PACKAGE VERSION
# npm ci of the package.json + package-lock.json in SRC into HOME, redone only when those
# files change (a stamp holds their hash) or PACKAGE is missing; checks that npm installed
# PACKAGE at VERSION.
couchlua_npm_install() {
  local src=$1 home=$2 package=$3 want=$4 key stamp=$2/.installed log version
  key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum) ||
    couchlua_die "cannot read $src/package*.json"
  key=${key%% *}
  [[ -f $stamp && $(<"$stamp") == "$key" && -f $home/node_modules/$package/package.json ]] && return 0
  couchlua_err "installing $package $want into ${home#"$COUCHLUA_ROOT"/} (npm ci)..."
  mkdir -p "$home" || couchlua_die "cannot create $home"
  rm -f "$stamp"
  cp "$src/package.json" "$src/package-lock.json" "$home/" || couchlua_die "cannot copy the package files"
  log=$home/npm-ci.log
  if ! (cd "$home" && npm ci --no-audit --no-fund) >"$log" 2>&1; then
    cat "$log" >&2
    couchlua_die "npm ci failed in $home (log above, also in $log)"
  fi
  version=$(node -p "require('$home/node_modules/$package/package.json').version" 2>&1)
  [[ $version == "$want" ]] || couchlua_die "expected $package $want, npm installed '$version'"
  printf '%s\n' "$key" >"$stamp"
}

couchlua_pouchdb_install() {
  couchlua_npm_install "$COUCHLUA_POUCHDB_SRC" "$COUCHLUA_POUCHDB_HOME" pouchdb-server "$COUCHLUA_POUCHDB_VERSION"
  couchlua_pouchdb_patch
}

# IBM's couchbackup/couchrestore, pinned for the interop tests (tests/server/test_backup.lua).
COUCHLUA_COUCHBACKUP_VERSION=2.11.12
COUCHLUA_COUCHBACKUP_SRC=$COUCHLUA_ROOT/tests/support/couchbackup
COUCHLUA_COUCHBACKUP_HOME=$COUCHLUA_ROOT/.deps/couchbackup
couchlua_couchbackup_install() {
  couchlua_npm_install "$COUCHLUA_COUCHBACKUP_SRC" "$COUCHLUA_COUCHBACKUP_HOME" @cloudant/couchbackup \
    "$COUCHLUA_COUCHBACKUP_VERSION"
}

# PouchDB 9, the client-side replicator users would pick instead of couchlua: pinned for
# the interop tests (tests/server/test_pouchdb_peer.lua) and bench/run replicate, driven
# through tests/support/pouchdb-peer/replicate.js.
COUCHLUA_POUCHDB_PEER_VERSION=9.0.0
COUCHLUA_POUCHDB_PEER_SRC=$COUCHLUA_ROOT/tests/support/pouchdb-peer
COUCHLUA_POUCHDB_PEER_HOME=$COUCHLUA_ROOT/.deps/pouchdb-peer
couchlua_pouchdb_peer_install() {
  couchlua_npm_install "$COUCHLUA_POUCHDB_PEER_SRC" "$COUCHLUA_POUCHDB_PEER_HOME" pouchdb \
    "$COUCHLUA_POUCHDB_PEER_VERSION"
}

# pouchdb-merge's latest() throws when _bulk_get / open_revs with latest=true asks for a
# rev the server does not have, and the throw kills the server. Make it answer the rev.
couchlua_pouchdb_patch() {
  local dir=$COUCHLUA_POUCHDB_HOME/node_modules/pouchdb-merge/lib f n
  local pattern="^[[:space:]]*throw new Error\('Unable to resolve latest revision"
  local marker="couchlua-patch: latest-rev"
  for f in "$dir/index.js" "$dir/index.es.js"; do
    [[ -f $f ]] || couchlua_die "patch: $f not found (did the pouchdb-server install change?)"
    grep -q "$marker" "$f" && continue
    n=$(grep -cE "$pattern" "$f")
    [[ $n == 1 ]] || couchlua_die "patch: expected one line matching \"throw new Error('Unable to resolve latest revision\" in $f, found ${n:-0}; update couchlua_pouchdb_patch in scripts/lib.sh"
    sed -i -E "s/${pattern}.*\$/  return rev; \/\* ${marker} (was: throw) \*\//" "$f" ||
      couchlua_die "patch: sed failed on $f"
    grep -q "$marker" "$f" || couchlua_die "patch: $f was not changed"
  done
}

# True when something accepts connections on 127.0.0.1:PORT.
couchlua_port_in_use() {
  (exec {fd}<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True when a pouchdb-server answers GET / on 127.0.0.1:PORT.
couchlua_pouchdb_answers() {
  local fd resp=
  { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nAccept: application/json\r\n\r\n' "$1" >&"$fd"
  IFS= read -r -t 2 -d '' resp <&"$fd"
  exec {fd}<&-
  [[ $resp == HTTP/1.[01]\ 200* && $resp == *express-pouchdb* ]]
}

# True when PID exists and is not a zombie.
couchlua_alive() {
  local s
  [[ -n ${1:-} ]] || return 1
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  s=${s##*) }
  [[ ${s%% *} != Z ]]
}

# couchlua_pouchdb_start [--detach]
# Starts pouchdb-server --in-memory on 127.0.0.1 in a fresh temp dir, on a free port
# (or on $COUCHLUA_TEST_PORT), and waits until it answers. On success sets
# COUCHLUA_POUCHDB_URL, COUCHLUA_POUCHDB_PORT, COUCHLUA_POUCHDB_PID and
# COUCHLUA_POUCHDB_DIR. Without --detach the server is a child of this shell and gets
# SIGTERM if this shell dies (even by SIGKILL, as on a ctest timeout), and its temp dir
# is removed once it is gone; with --detach it is in a session of its own and lives
# until someone stops it (couchlua_pouchdb_stop PID DIR).
couchlua_pouchdb_start() {
  local detach='' fixed=${COUCHLUA_TEST_PORT:-} port dir pid i out
  [[ ${1:-} == --detach ]] && detach=1
  COUCHLUA_POUCHDB_URL='' COUCHLUA_POUCHDB_PORT='' COUCHLUA_POUCHDB_PID='' COUCHLUA_POUCHDB_DIR=''
  if [[ ! -f $COUCHLUA_POUCHDB_BIN ]]; then
    couchlua_err "error: pouchdb-server is not installed in $COUCHLUA_POUCHDB_HOME; run scripts/setup"
    return 1
  fi
  if [[ -n $fixed && ! $fixed =~ ^[0-9]+$ ]]; then
    couchlua_err "error: COUCHLUA_TEST_PORT='$fixed' is not a port number"
    return 1
  fi
  for _ in 1 2 3 4 5 6 7 8; do
    if [[ -n $fixed ]]; then
      port=$fixed
      if couchlua_port_in_use "$port"; then
        couchlua_err "error: port $port (COUCHLUA_TEST_PORT) on 127.0.0.1 is already in use; unset COUCHLUA_TEST_PORT to pick a free port"
        return 1
      fi
    else
      # Below Linux's ephemeral range (32768+), so client sockets do not collide.
      port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
      couchlua_port_in_use "$port" && continue
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/couchlua-pouchdb.XXXXXX") || {
      couchlua_err "error: mktemp failed"; return 1; }
    local cmd=(node --unhandled-rejections=warn "$COUCHLUA_POUCHDB_BIN"
               --host 127.0.0.1 --port "$port" --in-memory --no-color -n -c ./config.json)
    if [[ -n $detach ]]; then
      (cd "$dir" && exec setsid "${cmd[@]}") </dev/null >"$dir/server.out" 2>&1 &
    else
      (cd "$dir" && exec setpriv --pdeathsig TERM "${cmd[@]}") </dev/null >"$dir/server.out" 2>&1 &
    fi
    pid=$!
    # Removes the temp dir once the server is gone, even when nobody stops it properly
    # (a ctest timeout SIGKILLs the test's whole process group). In a session of its
    # own so that kill misses it; holds no terminal or pipe.
    if [[ -z $detach ]]; then
      setsid -f sh -c 'tail -s 0.2 --pid="$1" -f /dev/null; rm -rf "$2"' reaper "$pid" "$dir" \
        </dev/null >/dev/null 2>&1
    fi
    for ((i = 0; i < 200; i++)); do          # 200 x 0.1 s = 20 s
      couchlua_alive "$pid" || break
      if couchlua_pouchdb_answers "$port" && couchlua_alive "$pid"; then
        COUCHLUA_POUCHDB_URL=http://127.0.0.1:$port
        COUCHLUA_POUCHDB_PORT=$port COUCHLUA_POUCHDB_PID=$pid COUCHLUA_POUCHDB_DIR=$dir
        return 0
      fi
      sleep 0.1
    done
    out=$(tail -n 30 "$dir/server.out" 2>/dev/null; tail -n 20 "$dir/log.txt" 2>/dev/null)
    if ! couchlua_alive "$pid" && [[ -z $fixed ]] &&
       [[ $out == *EADDRINUSE* || $out == *"already in use"* || $out == *stopTailingLog* ]]; then
      couchlua_pouchdb_stop "$pid" "$dir"      # lost the race for this port: try another
      continue
    fi
    if couchlua_alive "$pid"; then
      couchlua_err "error: pouchdb-server (pid $pid, port $port) did not answer GET / within 20 s"
    else
      couchlua_err "error: pouchdb-server (port $port) exited before answering GET /"
    fi
    couchlua_err "its output ($dir/server.out, log.txt), last lines:"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    couchlua_pouchdb_stop "$pid" "$dir"
    return 1
  done
  couchlua_err "error: could not find a free port for pouchdb-server after 8 attempts"
  return 1
}

# couchlua_pouchdb_stop [PID [DIR]]  (defaults: the last server this shell started)
couchlua_pouchdb_stop() {
  local pid=${1:-${COUCHLUA_POUCHDB_PID:-}} dir=${2:-${COUCHLUA_POUCHDB_DIR:-}} i
  if [[ -n $pid ]]; then
    if couchlua_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null
      for ((i = 0; i < 50; i++)); do couchlua_alive "$pid" || break; sleep 0.1; done
      if couchlua_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do couchlua_alive "$pid" || break; sleep 0.1; done
      fi
    fi
    wait "$pid" 2>/dev/null   # reap it when it is our child
  fi
  if [[ -n $dir && $(basename "$dir") == couchlua-pouchdb.* && -d $dir ]]; then
    rm -rf "$dir"
  fi
  if [[ $pid == "${COUCHLUA_POUCHDB_PID:-}" ]]; then
    COUCHLUA_POUCHDB_PID='' COUCHLUA_POUCHDB_DIR=''
  fi
  return 0
}

# couchlua_run_with_pouchdb CMD...
# Starts a server, exports COUCHLUA_TEST_URL, COUCHLUA_TEST_SERVER=pouchdb,
# COUCHLUA_TEST_SERVER_PID and COUCHLUA_TEST_SERVER_DIR, runs CMD, stops the server.
# Meant to be the last thing a script does (see couchlua_run_then_stop).
couchlua_run_with_pouchdb() {
  couchlua_pouchdb_start || return 1
  export COUCHLUA_TEST_URL=$COUCHLUA_POUCHDB_URL COUCHLUA_TEST_SERVER=pouchdb
  export COUCHLUA_TEST_SERVER_PID=$COUCHLUA_POUCHDB_PID COUCHLUA_TEST_SERVER_DIR=$COUCHLUA_POUCHDB_DIR
  couchlua_run_then_stop couchlua_pouchdb_stop "$@"
}

# couchlua_run_then_stop STOP_FN CMD...
# Runs CMD, then STOP_FN (which stops the server started for it); returns CMD's status.
# CMD runs in the background of this shell so SIGINT/SIGTERM/SIGHUP to this shell are
# handled at once: the signal is passed on to CMD (KILL after 5 s), STOP_FN runs and the
# shell exits with 128+signal. If the shell is SIGKILLed, CMD gets SIGTERM (parent-death
# signal). It installs traps and exits on a signal.
couchlua_run_then_stop() {
  _couchlua_stop_fn=$1
  shift
  trap '"$_couchlua_stop_fn"' EXIT
  trap '_couchlua_on_signal INT 2' INT
  trap '_couchlua_on_signal TERM 15' TERM
  trap '_couchlua_on_signal HUP 1' HUP
  # A background job of a non-interactive shell starts with SIGINT/SIGQUIT ignored and
  # stdin on /dev/null: undo both so CMD behaves as in the foreground.
  # CMD also gets SIGTERM should this shell be SIGKILLed.
  env --default-signal=INT,QUIT setpriv --pdeathsig TERM "$@" <&0 &
  _couchlua_cmd_pid=$!
  local rc=0
  wait "$_couchlua_cmd_pid" || rc=$?
  _couchlua_cmd_pid=
  "$_couchlua_stop_fn"
  trap - EXIT INT TERM HUP
  return "$rc"
}

_couchlua_on_signal() {
  local i
  trap '' INT TERM HUP
  if [[ -n ${_couchlua_cmd_pid:-} ]] && couchlua_alive "$_couchlua_cmd_pid"; then
    kill -"$1" "$_couchlua_cmd_pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do couchlua_alive "$_couchlua_cmd_pid" || break; sleep 0.1; done
    couchlua_alive "$_couchlua_cmd_pid" && kill -KILL "$_couchlua_cmd_pid" 2>/dev/null
    wait "$_couchlua_cmd_pid" 2>/dev/null
  fi
  "$_couchlua_stop_fn"
  trap - EXIT
  exit $((128 + $2))
}

# --- build -----------------------------------------------------------------------------

# couchlua_build DIR [CMAKE_CONFIGURE_ARG...]: configures DIR (only when it has no
# CMakeCache.txt) and builds it, printing the output only when something fails.
couchlua_build() {
  local dir=$1 out
  shift
  [[ $dir == /* ]] || dir=$COUCHLUA_ROOT/$dir
  if [[ ! -f $dir/CMakeCache.txt ]]; then
    couchlua_err "configuring and building ${dir#"$COUCHLUA_ROOT"/}/ ..."
    out=$(cmake -S "$COUCHLUA_ROOT" -B "$dir" "$@" 2>&1) || {
      printf '%s\n' "$out" >&2; couchlua_die "cmake configure of $dir failed"; }
  fi
  out=$(cmake --build "$dir" -j"$(nproc)" 2>&1) || {
    printf '%s\n' "$out" >&2; couchlua_die "build in $dir failed"; }
}
