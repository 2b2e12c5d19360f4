# Helpers for the packaging tests (test_install, test_version, test_manpage, test_deb,
# test_rockspec); sourced after check.sh.
#   project_version        the version in CMakeLists.txt's project(), the one number
#                          everything else must show
#   need TOOL [PACKAGE]    exit 77 (skip, with the reason printed) when TOOL is missing;
#                          scripts/setup installs PACKAGE

project_version() {
  sed -n 's/^project(couchlua VERSION \([0-9][0-9.]*\).*/\1/p' "$COUCHLUA_SOURCE_DIR/CMakeLists.txt"
}

need() {
  if ! command -v "$1" >/dev/null; then
    echo "SKIP: $1 is not installed (scripts/setup installs ${2:-$1})" >&2
    exit 77
  fi
}
