-- The couch module for a stock Lua 5.4, built with luarocks:
--   luarocks make couch-0.1.0-1.rockspec [--tree DIR]      (from a source checkout)
-- The build is the project's own CMake build, asked for couch.so only (cmake/rock.cmake):
-- the Lua half of the module (lua/couch/*.lua) is embedded into couch.so by the same step
-- as in every other build, so the rock is one file that cannot drift from its Lua parts.
-- The version here is CMakeLists.txt's project(VERSION) (tests/cli/test_version.sh checks).
rockspec_format = "3.0"
package = "couch"
version = "0.1.0-1"
source = {
  -- Where releases will be published; `luarocks make` builds the checkout it runs in.
  url = "git+https://example.org/couchlua.git",
  tag = "v0.1.0",
}
description = {
  summary = "Script CouchDB and Cloudant replication from Lua 5.4",
  detailed = [[
The couch module of couchlua: servers, databases, the _replicator database, the
replication scheduler, a client-side replicator and ArangoDB's replication API, with
network calls that yield inside tasks so many replications are followed at once.
]],
  license = "none chosen yet",
  labels = { "couchdb", "replication", "http" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- Checked by luarocks before the build (CMake then finds them with pkg-config). Debian puts
-- curl/curl.h in a multiarch include directory luarocks does not search: the library stands
-- for it (libcurl.so is in libcurl4-openssl-dev, as the header is).
external_dependencies = {
  CURL = { library = "curl" },
  YAJL = { header = "yajl/yajl_parse.h" },
  OPENSSL = { header = "openssl/evp.h" },
}
build = {
  type = "cmake",
  variables = {
    COUCHLUA_ROCK = "ON",
    COUCHLUA_ROCK_LIBDIR = "$(LIBDIR)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
  },
}
