# The rockspec's build (couch-<version>-1.rockspec, build.type = "cmake"): luarocks runs
#   cmake -H. -Bbuild.luarocks -DCOUCHLUA_ROCK=ON -DCOUCHLUA_ROCK_LIBDIR=$(LIBDIR) -DLUA_INCDIR=...
# then builds and installs. Only couch.so is built (the Lua half of the module is embedded
# in it, as for every other build), and it is installed straight into the rock's LIBDIR,
# from where luarocks deploys it to <tree>/lib/lua/5.4/couch.so.
if(NOT COUCHLUA_ROCK_LIBDIR)
  message(FATAL_ERROR "COUCHLUA_ROCK=ON needs COUCHLUA_ROCK_LIBDIR (the rock's $(LIBDIR))")
endif()
install(TARGETS couch_module LIBRARY DESTINATION ${COUCHLUA_ROCK_LIBDIR})
