'use strict';
// CouchDB error answers as exceptions.

class HttpError extends Error {
  constructor(status, error, reason, headers) {
    super(`${status} ${error}: ${reason}`);
    this.status = status;
    this.error = error;
    this.reason = reason;
    this.headers = headers;
  }
}
const notFound = (reason = 'missing') => new HttpError(404, 'not_found', reason);
const conflict = () => new HttpError(409, 'conflict', 'Document update conflict.');
const badRequest = (reason) => new HttpError(400, 'bad_request', reason);
const methodNotAllowed = (allowed) => new HttpError(405, 'method_not_allowed', `Only ${allowed} allowed`, { Allow: allowed });

module.exports = { HttpError, badRequest, conflict, methodNotAllowed, notFound };
