#ifndef COUCH_ACCOUNT_H
#define COUCH_ACCOUNT_H
#include <lua.h>
/* Account for every revision asked of the source (issue 11: a short answer lost
 * documents). asked: id -> [rev]; docs: the sliced answers (internal.slice_docs), of which
 * docs[from..] answer `asked`. Rewrites each of those entries to an "ok" document or to
 * {error = {id =, rev =, error =, reason =}} (a {missing} answer, an error answer, a
 * document under another id than asked, an entry of no known shape), and pushes
 * id -> [rev] of the revisions nothing answered. Returns how many those are. */
lua_Integer couch_account_reads(lua_State *L, int asked, int docs, lua_Integer from);
/* Append an {error = no_answer} entry to docs for every revision of unanswered. */
void couch_account_unanswered(lua_State *L, int unanswered, int docs);
#endif
