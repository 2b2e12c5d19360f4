# Debian packages with `cpack -G DEB` from a build configured with --prefix /usr
# (packaging/build-deb does it all):
#   couchlua         the couchlua command, couch.so for Debian's lua5.4, the man page
#   libcouchlua0     the shared library, what programs built against libcouchlua-dev run
#                    with (libcouchlua<major>: named after its soname)
#   libcouchlua-dev  couchlua.h, couchlua_version.h, libcouchlua.a, libcouchlua.so, couchlua.pc
# Versions come from project(VERSION); run-time dependencies from dpkg-shlibdeps (liblua5.4-0,
# libcurl4, libyajl2, libedit2, libssl3), so they follow what the binaries really link.
set(COUCHLUA_MAINTAINER "couchlua maintainers <couchlua@example.org>" CACHE STRING
  "Maintainer field of the Debian packages")
option(COUCHLUA_DEBIAN "Install the Debian doc files (copyright, changelog) per package" OFF)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME couchlua)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${COUCHLUA_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL cli runtime dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME couchlua)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION interpreters)
set(CPACK_DEBIAN_CLI_PACKAGE_SUGGESTS lua5.4)
set(CPACK_COMPONENT_CLI_DESCRIPTION "Lua 5.4 for scripting CouchDB replication
couchlua runs Lua 5.4 scripts with the couch module: start, watch, stop and
repair CouchDB and Cloudant replications, read the replication scheduler and
copy databases with a client-side replicator, many of these at once in tasks.
.
This package holds the couchlua command (options as lua5.4's, plus a REPL
with tab completion) and couch.so, the same module for Debian's lua5.4
(require 'couch').")

# Named after the soname (libcouchlua.so.<major>, CMakeLists.txt's SOVERSION), as Debian does.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libcouchlua${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)  # a shlibs file for the library's package
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# ldconfig through a dpkg trigger, as Debian wants; the postinst/postrm given here only
# stop cpack from writing its own that call ldconfig directly.
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/runtime/triggers
  ${CMAKE_SOURCE_DIR}/packaging/runtime/postinst
  ${CMAKE_SOURCE_DIR}/packaging/runtime/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "Lua 5.4 host with the couch module (shared library)
libcouchlua embeds Lua 5.4 with the couch module for scripting CouchDB
replication in a C program.
.
This package holds the shared library.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libcouchlua-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "${CPACK_DEBIAN_RUNTIME_PACKAGE_NAME} (= ${PROJECT_VERSION}), liblua5.4-dev, libcurl4-openssl-dev | libcurl-dev, libyajl-dev, libssl-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION "Lua 5.4 host with the couch module (development files)
libcouchlua embeds Lua 5.4 with the couch module for scripting CouchDB
replication in a C program.
.
This package holds the header, the static library and couchlua.pc
(pkg-config --cflags --libs couchlua).")

# /usr/share/doc/<package>/{copyright,changelog.gz} in each package, as Debian policy asks.
if(COUCHLUA_DEBIAN)
  string(TIMESTAMP COUCHLUA_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
  configure_file(packaging/debian-changelog.in ${CMAKE_BINARY_DIR}/debian/changelog @ONLY)
  add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/debian/changelog.gz
    COMMAND ${GZIP_EXECUTABLE} -9 -n -c ${CMAKE_BINARY_DIR}/debian/changelog
            > ${CMAKE_BINARY_DIR}/debian/changelog.gz
    DEPENDS ${CMAKE_BINARY_DIR}/debian/changelog)
  add_custom_target(couchlua_debian_changelog ALL DEPENDS ${CMAKE_BINARY_DIR}/debian/changelog.gz)
  foreach(comp cli runtime dev)
    string(TOUPPER ${comp} COMP)
    install(FILES packaging/copyright ${CMAKE_BINARY_DIR}/debian/changelog.gz
      DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${CPACK_DEBIAN_${COMP}_PACKAGE_NAME}
      COMPONENT ${comp})
  endforeach()
endif()

include(CPack)
