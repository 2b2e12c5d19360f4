# man/couchlua.1.in -> build/man/couchlua.1 (version and date filled in; the date honours
# SOURCE_DATE_EPOCH for reproducible builds), compressed as Debian wants, installed into
# share/man/man1 with the cli component.
string(TIMESTAMP COUCHLUA_MAN_DATE "%Y-%m-%d" UTC)
set(COUCHLUA_MAN ${CMAKE_BINARY_DIR}/man/couchlua.1)
configure_file(man/couchlua.1.in ${COUCHLUA_MAN} @ONLY)
find_program(GZIP_EXECUTABLE gzip)
if(NOT GZIP_EXECUTABLE)
  message(FATAL_ERROR "gzip not found: it compresses the man page")
endif()
add_custom_command(OUTPUT ${COUCHLUA_MAN}.gz
  COMMAND ${GZIP_EXECUTABLE} -9 -n -c ${COUCHLUA_MAN} > ${COUCHLUA_MAN}.gz
  DEPENDS ${COUCHLUA_MAN}
  COMMENT "Compressing the man page")
add_custom_target(couchlua_man ALL DEPENDS ${COUCHLUA_MAN}.gz)
install(FILES ${COUCHLUA_MAN}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT cli)
