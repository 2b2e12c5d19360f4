'use strict';
// GET/PUT /db/_security, validated as CouchDB 3.4.3 validates it.
//
// couch_db:validate_security_object runs on every shard: admins and members (readers as
// a fallback) must be objects whose names and roles, when present, are lists of strings.
// When the shards refuse, the cluster answers 500 no_majority -- recorded for
// {"admins": {"names": {}, "roles": {}}, ...} in fixtures/couchdb-3.4.3-suite
// (the *-security.json exchange). The other refusals are assumed to answer the same way,
// since they fail in the same shard call.
const { isObj, has } = require('./json');
const { HttpError, methodNotAllowed } = require('./errors');
const { jsonBody, send } = require('./http');

const noMajority = () => new HttpError(500, 'error', 'no_majority');

function listOfStrings(v) {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function validNamesAndRoles(v) {
  if (!isObj(v)) return false;
  if (has(v, 'names') && !listOfStrings(v.names)) return false;
  if (has(v, 'roles') && !listOfStrings(v.roles)) return false;
  return true;
}

function validSecurity(sec) {
  if (!isObj(sec)) return false;
  const members = has(sec, 'members') ? sec.members : sec.readers;
  if (has(sec, 'admins') && !validNamesAndRoles(sec.admins)) return false;
  if (members !== undefined && !validNamesAndRoles(members)) return false;
  return true;
}

function handleSecurity(req, res, db, bodyText) {
  if (req.method === 'GET' || req.method === 'HEAD') return send(req, res, 200, db.security);
  if (req.method !== 'PUT') throw methodNotAllowed('GET,HEAD,PUT');
  const sec = jsonBody(bodyText);
  if (!validSecurity(sec)) throw noMajority();
  db.security = sec;
  return send(req, res, 200, { ok: true });
}

module.exports = { handleSecurity, validSecurity };
