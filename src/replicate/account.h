#ifndef COUCH_ACCOUNT_H
#define COUCH_ACCOUNT_H
#include "replicate/revmap.h"

#include <lua.h>
/* Account for every revision asked of the source (issue 11: a short answer lost
 * documents). asked: the live entries of that map in [from_e, to_e) (id -> [rev]); docs:
 * the sliced answers (internal.slice_docs), of which docs[from..] answer `asked`. Rewrites
 * each of those entries to an "ok" document or to {error = {id =, rev =, error =, reason =}}
 * (a {missing} answer, an error answer, a document under another id than asked, an entry
 * of no known shape), and fills `unanswered` (cleared first) with the revisions nothing
 * answered. Returns how many those are. */
lua_Integer couch_account_reads(lua_State *L, const couch_repl_revmap *asked, size_t from_e, size_t to_e, int docs,
                                lua_Integer from, couch_repl_revmap *unanswered);
/* Append an {error = no_answer} entry to docs for every revision of unanswered. */
void couch_account_unanswered(lua_State *L, const couch_repl_revmap *unanswered, int docs);
#endif
