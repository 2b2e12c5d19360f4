/* Auth in the request layer: credentials on each attempt, and the login (a cookie session
 * from POST /_session, or an IAM bearer token from the token endpoint) chained before the
 * requests that need it — one login per connection, shared by every request waiting for
 * it. A 401 to an expired session or token renews it and retries the request once. */
#ifndef COUCH_AUTH_H
#define COUCH_AUTH_H

#include "http/request.h"

/* Set the connection's credentials on r's easy handle (none on a login itself). */
void couch_auth_apply(couch_request *r);

/* Before r is admitted: when the connection has no valid credentials, put r behind the
 * (shared) login and return 1; the login admits r when it succeeds and finishes r with
 * its failure (r->login) when it fails. 0: go ahead. */
int couch_auth_hold(couch_request *r);

/* r's final answer is in: when it is a 401 that a new login may cure (cookie or IAM, the
 * caller does not take 401s, r has not been renewed yet), take r and return 1: it is sent
 * again after the login (or at once when a newer login has happened since r was sent). */
int couch_auth_renew(couch_request *r);

/* r is cancelled: leave the login's waiters (a login nobody waits for stops). */
void couch_auth_unhold(couch_request *r);

/* r is freed: drop its reference to the failed login it reports. */
void couch_auth_release(couch_request *r);

/* The next request logs in anew (srv:login()). */
void couch_auth_forget(couch_conn *c);

/* The connection goes away: stop its login, let go of its waiters. */
void couch_auth_conn_free(couch_conn *c);

#endif
