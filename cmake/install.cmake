# What `cmake --install` puts where. Components (used by cmake/package.cmake to split the
# Debian packages; a plain `cmake --install` installs them all):
#   cli      bin/couchlua, couch.so in <libdir>/lua/5.4, the man page
#   runtime  libcouchlua.so.<major> (what programs linked against the library need)
#   dev      couchlua.h, couchlua_version.h, libcouchlua.a, the libcouchlua.so link, the .pc
include(GNUInstallDirs)

install(TARGETS couchlua RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cli)
# <libdir>/lua/5.4: with --prefix /usr that is /usr/lib/<multiarch>/lua/5.4, where Debian's
# lua5.4 looks (package.cpath) and Debian's own Lua modules go.
install(TARGETS couch_module LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/lua/5.4 COMPONENT cli)

install(TARGETS couchlua_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  COMPONENT runtime NAMELINK_COMPONENT dev)
install(TARGETS couchlua_static ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES include/couchlua.h ${COUCHLUA_GEN_INCLUDE}/couchlua_version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)

# couchlua.pc. Its prefix is relative to the .pc file, so `cmake --install --prefix X` gives
# a correct one. Programs linked with `pkg-config --libs couchlua` get an rpath to the
# library directory (-Wl,-rpath,${libdir}) unless the dynamic linker searches it anyway
# (/usr/lib, /usr/lib/<multiarch>): an install into $HOME/.local, /opt/x or /usr/local
# then runs with no LD_LIBRARY_PATH and no ldconfig.
file(RELATIVE_PATH PC_RELATIVE_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
if(CMAKE_INSTALL_FULL_LIBDIR IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
  set(COUCHLUA_PC_RPATH_DEFAULT OFF)
else()
  set(COUCHLUA_PC_RPATH_DEFAULT ON)
endif()
option(COUCHLUA_PC_RPATH "couchlua.pc's Libs carry -Wl,-rpath,\${libdir}" ${COUCHLUA_PC_RPATH_DEFAULT})
if(COUCHLUA_PC_RPATH)
  set(PC_RPATH_FLAG " -Wl,-rpath,\${libdir}")
else()
  set(PC_RPATH_FLAG "")
endif()
configure_file(cmake/couchlua.pc.in ${CMAKE_BINARY_DIR}/couchlua.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/couchlua.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

include(cmake/manpage.cmake)

# couchlua-backup / couchlua-restore: one script (examples/couchlua-backup.lua, run by
# couchlua through its #! line) that picks its direction from the name it is called by.
install(PROGRAMS examples/couchlua-backup.lua DESTINATION ${CMAKE_INSTALL_BINDIR}
  RENAME couchlua-backup COMPONENT cli)
install(PROGRAMS examples/couchlua-backup.lua DESTINATION ${CMAKE_INSTALL_BINDIR}
  RENAME couchlua-restore COMPONENT cli)
