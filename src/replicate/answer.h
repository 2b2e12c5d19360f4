#ifndef COUCH_ANSWER_H
#define COUCH_ANSWER_H
#include <lua.h>
/* Raise the error for an answer of `side` (the job's "source" or "target" database, at
 * stack index job) to method + path that breaks the replication protocol: a structured
 * error of `kind` ("http" for a wrong shape or an empty body, "json" for text that does
 * not parse) with status, method, error = code and the request's url, credentials
 * redacted. Does not return. */
int couch_answer_raise(lua_State *L, int job, const char *side, const char *method, const char *path,
                       lua_Integer status, const char *kind, const char *code, const char *fmt, ...);
#endif
