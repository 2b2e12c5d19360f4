/* couch's output, by kind, to stdio or to the host's writer (see output.h). */
#include "output.h"

#include "couchlua.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WRITER_KEY "couch.output.writer" /* registry: a full userdata holding a struct writer */

struct writer {
  couch_writer fn;
  void *ud;
  char warning[1024];  /* a warning in pieces (lua_warning's tocont) is gathered here */
  size_t warning_len;
};

static struct writer *get_writer(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, WRITER_KEY);
  struct writer *w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return (w && w->fn) ? w : NULL;
}

static FILE *stream_of(int kind) { return kind == COUCHLUA_PRINT ? stdout : stderr; }

void couch_output_write(lua_State *L, int kind, const char *text, size_t len) {
  struct writer *w = get_writer(L);
  if (w) {
    w->fn(w->ud, kind, text, len);
    return;
  }
  FILE *f = stream_of(kind);
  fwrite(text, 1, len, f);
  fflush(f);
}

int couch_output_is_tty(lua_State *L, int kind) {
  if (get_writer(L)) return 0;
  return isatty(fileno(stream_of(kind)));
}

/* print(...) for a host with a writer: as Lua's, through the writer. */
static int host_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  couch_output_write(L, COUCHLUA_PRINT, text, len);
  return 0;
}

/* Lua's warning function for a host with a writer: pieces are gathered into one message;
 * control messages ("@on", "@off") are not output. */
static void host_warn(void *ud, const char *msg, int tocont) {
  struct writer *w = ud;
  size_t n = strlen(msg);
  if (w->warning_len == 0 && !tocont && msg[0] == '@') return;
  size_t room = sizeof w->warning - 1 - w->warning_len;
  if (n > room) n = room;
  memcpy(w->warning + w->warning_len, msg, n);
  w->warning_len += n;
  if (tocont) return;
  w->warning[w->warning_len++] = '\n';
  if (w->fn) {
    w->fn(w->ud, COUCHLUA_WARNING, w->warning, w->warning_len);
  } else { /* the writer was removed: as lua.c shows warnings */
    fprintf(stderr, "Lua warning: %.*s", (int)w->warning_len, w->warning);
    fflush(stderr);
  }
  w->warning_len = 0;
}

void couch_output_set_writer(lua_State *L, couch_writer fn, void *ud) {
  struct writer *w = lua_newuserdatauv(L, sizeof *w, 0);
  memset(w, 0, sizeof *w);
  w->fn = fn;
  w->ud = ud;
  lua_setfield(L, LUA_REGISTRYINDEX, WRITER_KEY); /* anchors it as long as the state lives */
  /* print and warn go through here from now on (to stdout / stderr again when fn is NULL) */
  lua_pushcfunction(L, host_print);
  lua_setglobal(L, "print");
  lua_setwarnf(L, host_warn, w);
}

static int kind_of(lua_State *L, int idx) {
  static const char *const names[] = {"print", "progress", "warning", "log", NULL};
  static const int kinds[] = {COUCHLUA_PRINT, COUCHLUA_PROGRESS, COUCHLUA_WARNING, COUCHLUA_LOG};
  return kinds[luaL_checkoption(L, idx, NULL, names)];
}

static int l_write(lua_State *L) {
  int kind = kind_of(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  couch_output_write(L, kind, text, len);
  return 0;
}

static int l_is_tty(lua_State *L) {
  lua_pushboolean(L, couch_output_is_tty(L, kind_of(L, 1)));
  return 1;
}

void couch_output_open(lua_State *L) {
  lua_pushcfunction(L, l_write);
  lua_setfield(L, -2, "write");
  lua_pushcfunction(L, l_is_tty);
  lua_setfield(L, -2, "is_tty");
}
