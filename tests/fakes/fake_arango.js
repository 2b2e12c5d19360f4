#!/usr/bin/env node
// FAKE ArangoDB replication endpoint for the tests -- NOT a real server.
//
// No ArangoDB can be installed where the tests run, so this stands in for the HTTP API
// that `couch.arango` talks to: /_api/replication/* (batch, inventory, dump, sync,
// clusterInventory, logger-state, logger-first-tick, applier-config / -state / -start /
// -stop, make-follower and its older name make-slave, server-id) and /_api/wal/* (tail,
// range, lastTick), plus the little of the rest of the API needed to give it data:
// POST /_open/auth (JWT), /_api/version, /_api/database, /_api/collection and
// /_api/document. Every path also works under /_db/{name}/.
//
// What it follows, in this order: ArangoDB's own server code where the tests' authors
// read it (RestReplicationHandler, the RocksDB replication handler), then the HTTP
// documentation of 3.11 / 3.12. Where they disagree the server wins, and it is said so
// next to the code (e.g. DELETE /batch/{id} of an unknown batch is 404 + errorNum 1600,
// not the documented 400; dump lines are RocksDB's {"type":2300,"data":{...}}, not the
// MMFiles fields the page lists, unless dump_format = "documented").
//
// It is STRICTER than ArangoDB in one way, on purpose: query parameters and body
// attributes it does not know for an endpoint are rejected with 400 (ArangoDB ignores
// them), so a client that misspells `includeSystem` fails a test instead of silently
// getting the default. Those answers say "(fake_arango strictness)".
//
// State: databases with collections and documents; one global tick that advances with
// every write (and every WAL marker carries it); dump batches with a TTL on the fake's
// clock; a replication applier per database (stopped / running, ticks advancing on a
// timer while it runs, connection failures when its endpoint is not this fake).
//
// Start:  node fake_arango.js ['<json config>']
//   Listens on 127.0.0.1 port 0, prints "PORT <n>" on stdout; exits when stdin closes
//   or on SIGTERM / SIGINT.
//
// Config (argv[2] as JSON, or POST /_fake/config, merged; seed/generate apply on reset):
//   users            {"root": "secret"}  accepted by basic auth and POST /_open/auth
//   require_auth     true                every non-/_fake request but /_open/auth needs
//                                        Basic credentials or a Bearer JWT
//   version          "3.11.7"            server.version; a "3.12..." version also removes
//                                        the endpoints 3.12 removed (unless `removed` set)
//   removed          [command, ...]      replication commands this server does not have
//                                        (e.g. "applier-start", "make-follower"), or
//                                        "wal/tail", "wal/range", "wal/lastTick" (404)
//   removed_style    "invalid_command"   how a removed command answers:
//                                        "invalid_command" 400/400 "invalid command 'x'"
//                                        (what RestReplicationHandler says for unknown
//                                        commands), "not_found" 404/404 "unknown path",
//                                        "not_implemented" 501/9 "not implemented"
//   role             "single"            or "coordinator": clusterInventory works, the
//                                        applier / sync / wal commands answer 501 + 1470,
//                                        batch / inventory / dump want a DBserver param
//   dump_format      "rocksdb"           or "documented" (adds tick, key, rev per line)
//   apply_rate       5                   WAL markers the running applier takes per step
//   apply_interval_ms 20                 applier step period
//   seed             {"db": {"coll": [doc, ...]}}   documents present after a reset
//   generate         {"db": {"coll": n}}            n generated documents after a reset
//
// Control endpoints (never logged, never need auth):
//   POST /_fake/reset            fresh state (seed / generate applied), log cleared
//   POST /_fake/config           merge config (above)
//   GET  /_fake/log              {"requests": [{method, path, query, headers, body, t}]}
//   GET  /_fake/state            {"tick", "batches": [{id, db, ttl, expires_in}],
//                                 "appliers": {db: {running, config (with password)}},
//                                 "wal_first_tick", "collections": {db: {coll: count}}}
//   POST /_fake/expire_tokens    every JWT issued so far becomes invalid
//   POST /_fake/advance_time     {"seconds": n}: the fake's clock jumps (batch TTLs)
//   POST /_fake/prune_wal        {"before": "tick"}: markers below that tick are gone
'use strict';

const http = require('http');
const crypto = require('crypto');

const START = Date.now();

// ---- ArangoDB error numbers (lib/Basics/errors.dat) ----
const ERR = {
  NOT_IMPLEMENTED: [9, 'not implemented'],
  BAD_PARAMETER: [10, 'bad parameter'],
  FORBIDDEN: [11, 'forbidden'],
  HTTP_BAD_PARAMETER: [400, 'bad parameter'],
  HTTP_UNAUTHORIZED: [401, 'unauthorized'],
  HTTP_NOT_FOUND: [404, 'not found'],
  HTTP_METHOD_NOT_ALLOWED: [405, 'method not supported'],
  HTTP_CORRUPTED_JSON: [600, 'invalid JSON object'],
  HTTP_SUPERFLUOUS_SUFFICES: [601, 'superfluous URL suffices'],
  DOCUMENT_NOT_FOUND: [1202, 'document not found'],
  DATA_SOURCE_NOT_FOUND: [1203, 'collection or view not found'],
  DUPLICATE_NAME: [1207, 'duplicate name'],
  ILLEGAL_NAME: [1208, 'illegal name'],
  UNIQUE_CONSTRAINT_VIOLATED: [1210, 'unique constraint violated'],
  DATABASE_NOT_FOUND: [1228, 'database not found'],
  USE_SYSTEM_DATABASE: [1230, 'operation only allowed in system database'],
  REPLICATION_NO_RESPONSE: [1400, 'no response'],
  REPLICATION_LEADER_ERROR: [1402, 'leader error'],
  REPLICATION_INVALID_APPLIER_CONFIGURATION: [1410, 'invalid replication applier configuration'],
  REPLICATION_RUNNING: [1411, 'cannot perform operation while applier is running'],
  REPLICATION_START_TICK_NOT_PRESENT: [1414, 'start tick not present'],
  CLUSTER_UNSUPPORTED: [1470, 'unsupported operation or parameter for clusters'],
  CLUSTER_ONLY_ON_COORDINATOR: [1471, 'this operation is only valid on a coordinator in a cluster'],
  CURSOR_NOT_FOUND: [1600, 'cursor not found'],
};

class ArangoError extends Error {
  constructor(code, err, message, headers) {
    super(message || err[1]);
    this.code = code;
    this.errorNum = err[0];
    this.errorMessage = message || err[1];
    this.headers = headers;
  }
}
const fail = (code, err, message, headers) => { throw new ArangoError(code, err, message, headers); };

// The endpoints ArangoDB 3.12 removed (leader/follower replication).
const REMOVED_IN_312 = ['sync', 'applier-config', 'applier-state', 'applier-start', 'applier-stop',
                        'make-follower', 'make-slave', 'server-id', 'logger-first-tick'];

let config;
let state;

function defaultConfig() {
  return {
    users: { root: 'secret' }, require_auth: true, version: '3.11.7', removed: null,
    removed_style: 'invalid_command', role: 'single', dump_format: 'rocksdb',
    apply_rate: 5, apply_interval_ms: 20, seed: null, generate: null,
  };
}

function removedCommands() {
  if (Array.isArray(config.removed)) return config.removed;
  return /^3\.1[2-9]|^[4-9]\./.test(config.version) ? REMOVED_IN_312 : [];
}

// ---- clock and ticks ----
function now() { return Date.now() + state.clockOffsetMs; }
function isoTime(ms) { return new Date(ms === undefined ? now() : ms).toISOString().replace(/\.\d+Z$/, 'Z'); }
function nextTick() { state.tick += 1; return String(state.tick); }
function lastTick() { return String(state.tick); }
function tickNum(s) { return Number(s); }

const SERVER_ID = '166787134712385';
const SERVER_HEX = 'hE8AAD5C1F2B4';

function serverInfo() { return { version: config.version, serverId: SERVER_ID }; }

// ---- state ----
function freshState() {
  const st = {
    tick: 1000000, clockOffsetMs: 0, dbs: new Map(), wal: [], batches: new Map(),
    tokens: new Set(), log: [], clients: new Map(), totalEvents: 0,
  };
  return st;
}

function newDatabase(name) {
  const id = nextTick();
  const db = { id, name, collections: new Map(), applier: newApplier(name) };
  state.dbs.set(name, db);
  return db;
}

function createDatabase(name) {
  const db = newDatabase(name);
  logMarker({ type: 1100, db: name, data: { database: Number(db.id), id: db.id, name } });
  for (const sys of ['_graphs', '_analyzers']) createCollection(db, sys, 2, true);
  return db;
}

function collectionParameters(c) {
  return {
    allowUserKeys: true, cacheEnabled: false, cid: c.id, computedValues: null, deleted: false,
    globallyUniqueId: c.cuid, id: c.id, internalValidatorType: 0, isDisjoint: false, isSmart: false,
    isSmartChild: false, isSystem: c.isSystem,
    keyOptions: { allowUserKeys: true, type: 'traditional', lastValue: c.lastValue },
    name: c.name, numberOfShards: 1, planId: c.id, replicationFactor: 1, schema: null,
    shardKeys: ['_key'], shardingStrategy: 'hash', shards: {}, status: 3, statusString: 'loaded',
    syncByRevision: true, type: c.type, usesRevisionsAsDocumentIds: true, version: 7,
    waitForSync: false, writeConcern: 1,
  };
}

function createCollection(db, name, type, isSystem) {
  const id = nextTick();
  const c = { id, cuid: `${SERVER_HEX}/${id}`, name, type: type || 2, isSystem: !!isSystem,
              docs: new Map(), lastValue: 0 };
  db.collections.set(name, c);
  logMarker({ type: 2000, db: db.name, cuid: c.cuid, data: collectionParameters(c) }, c.id);
  return c;
}

function logMarker(m, tick) {
  const t = tick || nextTick();
  state.wal.push({ tick: t, ...m });
  state.totalEvents += 1;
  return t;
}

function revFor(tick) { return '_' + Number(tick).toString(36).padStart(9, '-') + '-'; }

function writeDoc(db, c, doc) {
  const tick = nextTick();
  const key = typeof doc._key === 'string' ? doc._key : tick;
  const stored = { _key: key, _id: `${c.name}/${key}`, _rev: revFor(tick) };
  for (const [k, v] of Object.entries(doc)) if (k !== '_key' && k !== '_id' && k !== '_rev') stored[k] = v;
  c.docs.delete(key); // re-insert keeps "last written" order, as a snapshot iterates by write
  c.docs.set(key, { tick, doc: stored });
  c.lastValue = Math.max(c.lastValue, Number.isFinite(Number(key)) ? Number(key) : 0);
  logMarker({ type: 2300, db: db.name, tid: '0', cuid: c.cuid, data: stored }, tick);
  return stored;
}

function removeDoc(db, c, key) {
  const entry = c.docs.get(key);
  const tick = nextTick();
  c.docs.delete(key);
  logMarker({ type: 2302, db: db.name, tid: '0', cuid: c.cuid, data: { _key: key, _rev: revFor(tick) } }, tick);
  return { _id: `${c.name}/${key}`, _key: key, _rev: entry.doc._rev };
}

function applySeed() {
  const seed = config.seed || {};
  const gen = config.generate || {};
  const names = new Set([...Object.keys(seed), ...Object.keys(gen)]);
  for (const dbName of names) {
    const db = state.dbs.get(dbName) || createDatabase(dbName);
    for (const [cname, docs] of Object.entries(seed[dbName] || {})) {
      const c = db.collections.get(cname) || createCollection(db, cname, 2, cname.startsWith('_'));
      for (const d of docs) writeDoc(db, c, d);
    }
    for (const [cname, n] of Object.entries(gen[dbName] || {})) {
      const c = db.collections.get(cname) || createCollection(db, cname, 2, cname.startsWith('_'));
      for (let i = 1; i <= n; i++) {
        writeDoc(db, c, { _key: `k${String(i).padStart(6, '0')}`, n: i, name: `item ${i}`,
                          tags: ['t' + (i % 7)], nested: { even: i % 2 === 0, big: 9007199254740991, ratio: 0.1 } });
      }
    }
  }
}

function reset() {
  if (state) for (const db of state.dbs.values()) stopApplierTimer(db.applier);
  state = freshState();
  createDatabase('_system');
  applySeed();
}

// ---- HTTP plumbing ----
function send(res, status, body, headers) {
  const h = { server: 'ArangoDB', 'x-content-type-options': 'nosniff', ...(headers || {}) };
  if (body === undefined || body === null) {
    res.writeHead(status, { ...h, 'content-length': 0 });
    return res.end();
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  if (!h['content-type']) h['content-type'] = 'application/json; charset=utf-8';
  h['content-length'] = Buffer.byteLength(text);
  res.writeHead(status, h);
  res.end(text);
}

function sendError(res, e) {
  send(res, e.code, { code: e.code, error: true, errorMessage: e.errorMessage, errorNum: e.errorNum }, e.headers);
}

function parseJsonBody(req) {
  if (req.body === '') return undefined;
  try {
    return JSON.parse(req.body);
  } catch (err) {
    fail(400, ERR.HTTP_CORRUPTED_JSON, `VPackError error: ${err.message}`);
  }
}

function bodyObject(req) {
  const b = parseJsonBody(req);
  if (b === undefined || b === null || typeof b !== 'object' || Array.isArray(b)) {
    fail(400, ERR.HTTP_BAD_PARAMETER, 'invalid JSON: expecting an object as body');
  }
  return b;
}

// Query parameters: unknown ones are refused (fake_arango strictness).
function checkQuery(req, allowed) {
  for (const k of Object.keys(req.query)) {
    if (!allowed.includes(k)) {
      fail(400, ERR.HTTP_BAD_PARAMETER, `unknown query parameter '${k}' (fake_arango strictness: ArangoDB ignores it)`);
    }
  }
}

function qBool(req, name, dflt) {
  const v = req.query[name];
  if (v === undefined) return dflt;
  if (v === 'true') return true;
  if (v === 'false') return false;
  fail(400, ERR.HTTP_BAD_PARAMETER, `invalid value for query parameter '${name}': expecting true or false`);
}

function qTick(req, name) {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) fail(400, ERR.HTTP_BAD_PARAMETER, `invalid value for query parameter '${name}': expecting a tick`);
  return v;
}

function qPositiveInt(req, name) {
  const v = req.query[name];
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0) {
    fail(400, ERR.HTTP_BAD_PARAMETER, `invalid value for query parameter '${name}': expecting a positive integer`);
  }
  return Number(v);
}

// Body attributes: types as documented; unknown ones refused (fake_arango strictness).
function checkBody(body, spec) {
  for (const [k, v] of Object.entries(body)) {
    const want = spec[k];
    if (!want) fail(400, ERR.HTTP_BAD_PARAMETER, `unknown attribute '${k}' (fake_arango strictness: ArangoDB ignores it)`);
    const ok = {
      string: typeof v === 'string',
      boolean: typeof v === 'boolean',
      integer: Number.isInteger(v) && v >= 0,
      number: typeof v === 'number' && v >= 0,
      strings: Array.isArray(v) && v.every((s) => typeof s === 'string'),
    }[want];
    if (!ok) fail(400, ERR.HTTP_BAD_PARAMETER, `invalid value for attribute '${k}': expecting ${want === 'strings' ? 'an array of strings' : 'a ' + want}`);
  }
}

function methodNotAllowed() { fail(405, ERR.HTTP_METHOD_NOT_ALLOWED); }

// ---- auth ----
function b64url(buf) { return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_'); }

function issueJwt(user) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ preferred_username: user, iss: 'arangodb', iat: Math.floor(now() / 1000),
                                          exp: Math.floor(now() / 1000) + 3600, n: crypto.randomBytes(6).toString('hex') }));
  const sig = b64url(crypto.createHmac('sha256', 'fake-arango-secret').update(`${header}.${payload}`).digest());
  const jwt = `${header}.${payload}.${sig}`;
  state.tokens.add(jwt);
  return jwt;
}

function authorized(req) {
  if (!config.require_auth) return true;
  const h = req.headers.authorization || '';
  const basic = h.match(/^Basic (.+)$/i);
  if (basic) {
    const text = Buffer.from(basic[1], 'base64').toString('utf8');
    const i = text.indexOf(':');
    if (i < 0) return false;
    const user = text.slice(0, i);
    return Object.prototype.hasOwnProperty.call(config.users, user) && config.users[user] === text.slice(i + 1);
  }
  const bearer = h.match(/^Bearer (.+)$/i);
  return !!(bearer && state.tokens.has(bearer[1]));
}

function openAuth(req, res) {
  if (req.method !== 'POST') methodNotAllowed();
  const b = bodyObject(req);
  if (typeof b.username !== 'string') fail(400, ERR.HTTP_BAD_PARAMETER, "'username' must be a string");
  const pw = typeof b.password === 'string' ? b.password : '';
  if (!Object.prototype.hasOwnProperty.call(config.users, b.username) || config.users[b.username] !== pw) {
    fail(401, ERR.HTTP_UNAUTHORIZED, 'Wrong credentials');
  }
  send(res, 200, { jwt: issueJwt(b.username) });
}

// ---- documents, collections, databases (just enough to give the fake data) ----
function lookupCollection(db, name) {
  for (const c of db.collections.values()) if (c.name === name || c.id === name) return c;
  return null;
}

function validName(name) { return typeof name === 'string' && /^[a-zA-Z_][a-zA-Z0-9_-]{0,255}$/.test(name); }

function apiDatabase(req, res, db, rest) {
  if (rest.length !== 0) fail(404, ERR.HTTP_NOT_FOUND, `unknown path '${req.path}'`);
  if (req.method !== 'POST') methodNotAllowed();
  if (db.name !== '_system') fail(403, ERR.USE_SYSTEM_DATABASE);
  const b = bodyObject(req);
  if (!validName(b.name) || b.name.startsWith('_')) fail(400, ERR.ILLEGAL_NAME, 'database name invalid');
  if (state.dbs.has(b.name)) fail(409, ERR.DUPLICATE_NAME);
  createDatabase(b.name);
  send(res, 201, { error: false, code: 201, result: true });
}

function apiCollection(req, res, db, rest) {
  if (req.method === 'POST' && rest.length === 0) {
    const b = bodyObject(req);
    if (!validName(b.name)) fail(400, ERR.ILLEGAL_NAME);
    if (db.collections.has(b.name)) fail(409, ERR.DUPLICATE_NAME);
    const type = b.type === 3 ? 3 : 2;
    const c = createCollection(db, b.name, type, b.name.startsWith('_'));
    return send(res, 200, { error: false, code: 200, id: c.id, name: c.name, type: c.type, status: 3,
                            isSystem: c.isSystem, globallyUniqueId: c.cuid, waitForSync: false });
  }
  if (req.method === 'DELETE' && rest.length === 1) {
    const c = lookupCollection(db, rest[0]);
    if (!c) fail(404, ERR.DATA_SOURCE_NOT_FOUND);
    db.collections.delete(c.name);
    logMarker({ type: 2001, db: db.name, cuid: c.cuid });
    return send(res, 200, { error: false, code: 200, id: c.id });
  }
  if (req.method === 'GET' && rest.length === 2 && rest[1] === 'count') {
    const c = lookupCollection(db, rest[0]);
    if (!c) fail(404, ERR.DATA_SOURCE_NOT_FOUND);
    return send(res, 200, { error: false, code: 200, ...collectionParameters(c), count: c.docs.size });
  }
  methodNotAllowed();
}

function apiDocument(req, res, db, rest) {
  const c = rest.length >= 1 ? lookupCollection(db, rest[0]) : null;
  if (!c) fail(404, ERR.DATA_SOURCE_NOT_FOUND);
  checkQuery(req, ['waitForSync', 'returnNew', 'silent', 'overwrite']);
  const meta = (d) => ({ _id: d._id, _key: d._key, _rev: d._rev });
  if (rest.length === 1 && req.method === 'POST') {
    const b = parseJsonBody(req);
    const overwrite = qBool(req, 'overwrite', false);
    const one = (d) => {
      if (!d || typeof d !== 'object' || Array.isArray(d)) return { error: true, errorNum: 1227, errorMessage: 'invalid document type' };
      if (typeof d._key === 'string' && c.docs.has(d._key) && !overwrite) {
        return { error: true, errorNum: ERR.UNIQUE_CONSTRAINT_VIOLATED[0], errorMessage: ERR.UNIQUE_CONSTRAINT_VIOLATED[1] };
      }
      return meta(writeDoc(db, c, d));
    };
    if (Array.isArray(b)) return send(res, 202, b.map(one));
    const r = one(b);
    if (r.error) fail(r.errorNum === 1227 ? 400 : 409, r.errorNum === 1227 ? [1227, 'invalid document type'] : ERR.UNIQUE_CONSTRAINT_VIOLATED);
    return send(res, 202, r);
  }
  if (rest.length === 2) {
    const key = rest[1];
    const entry = c.docs.get(key);
    if (req.method === 'GET') {
      if (!entry) fail(404, ERR.DOCUMENT_NOT_FOUND);
      return send(res, 200, entry.doc);
    }
    if (req.method === 'PUT') {
      if (!entry) fail(404, ERR.DOCUMENT_NOT_FOUND);
      const b = bodyObject(req);
      return send(res, 202, meta(writeDoc(db, c, { ...b, _key: key })));
    }
    if (req.method === 'DELETE') {
      if (!entry) fail(404, ERR.DOCUMENT_NOT_FOUND);
      return send(res, 202, removeDoc(db, c, key));
    }
  }
  methodNotAllowed();
}

// ---- replication: batches, inventory, dump ----
function findBatch(id, db) {
  const b = state.batches.get(id);
  if (!b) return null;
  if (b.expires <= now()) { state.batches.delete(id); return null; }
  if (db && b.db !== db.name) return null;
  return b;
}

function needDbServer(req) {
  if (config.role === 'coordinator' && req.query.DBserver === undefined) {
    fail(400, ERR.HTTP_BAD_PARAMETER, 'need "DBserver" parameter');
  }
}

function cmdBatch(req, res, db, rest) {
  needDbServer(req);
  if (req.method === 'POST' && rest.length === 0) {
    checkQuery(req, ['state', 'serverId', 'syncerId', 'clientInfo', 'DBserver']);
    const withState = qBool(req, 'state', false);
    const b = bodyObject(req);
    checkBody(b, { ttl: 'number', patchCount: 'string' });
    // The server reads ttl with a default (0 / absent: 300 s); the seed sends null.
    const ttl = typeof b.ttl === 'number' && b.ttl > 0 ? b.ttl : 300;
    const id = nextTick();
    const snapshot = new Map();
    for (const c of db.collections.values()) {
      snapshot.set(c.name, { id: c.id, entries: [...c.docs.values()].map((e) => ({ tick: e.tick, doc: e.doc, type: c.type })) });
    }
    const batch = { id, db: db.name, ttl, expires: now() + ttl * 1000, lastTick: lastTick(), snapshot, cursors: new Map() };
    state.batches.set(id, batch);
    const out = { id, lastTick: batch.lastTick };
    if (withState) out.state = loggerStateBody().state;
    return send(res, 200, out);
  }
  if (rest.length === 1 && (req.method === 'PUT' || req.method === 'DELETE')) {
    checkQuery(req, ['DBserver']);
    const batch = findBatch(rest[0], db);
    if (req.method === 'DELETE') {
      // Documented as 400; the RocksDB handler answers 404 + ERROR_CURSOR_NOT_FOUND.
      if (!batch) fail(404, ERR.CURSOR_NOT_FOUND);
      state.batches.delete(batch.id);
      return send(res, 204);
    }
    const b = bodyObject(req);
    checkBody(b, { ttl: 'number' });
    if (!batch) fail(404, ERR.CURSOR_NOT_FOUND);
    if (typeof b.ttl === 'number' && b.ttl > 0) batch.ttl = b.ttl;
    batch.expires = now() + batch.ttl * 1000;
    return send(res, 204);
  }
  if (rest.length > 1) fail(400, ERR.HTTP_SUPERFLUOUS_SUFFICES, 'expecting URL /_api/replication/batch/<id>');
  methodNotAllowed();
}

function loggerStateBody() {
  const clients = [...state.clients.values()];
  return {
    state: { running: true, lastLogTick: lastTick(), lastUncommittedLogTick: lastTick(),
             totalEvents: state.totalEvents, time: isoTime() },
    server: { ...serverInfo(), engine: 'rocksdb' },
    clients,
  };
}

function inventoryOf(db, includeSystem, only) {
  const collections = [];
  for (const c of db.collections.values()) {
    if (!includeSystem && c.isSystem) continue;
    if (only && c.name !== only) continue;
    collections.push({ indexes: [], parameters: collectionParameters(c) });
  }
  return collections;
}

function cmdInventory(req, res, db) {
  if (req.method !== 'GET') methodNotAllowed();
  needDbServer(req);
  checkQuery(req, ['batchId', 'includeSystem', 'global', 'collection', 'DBserver']);
  const includeSystem = qBool(req, 'includeSystem', true);
  const global = qBool(req, 'global', false);
  const batchId = req.query.batchId;
  if (batchId === undefined) fail(404, ERR.CURSOR_NOT_FOUND, 'batchId not specified');
  if (!findBatch(batchId)) fail(404, ERR.CURSOR_NOT_FOUND, 'context was not found');
  const only = req.query.collection;
  const out = {};
  if (global) {
    if (db.name !== '_system') fail(403, ERR.FORBIDDEN, 'global inventory can only be fetched from within _system database');
    out.databases = {};
    for (const d of state.dbs.values()) {
      out.databases[d.name] = { id: d.id, name: d.name, collections: inventoryOf(d, includeSystem), views: [],
                                properties: { id: d.id, name: d.name, isSystem: d.name === '_system', sharding: '',
                                              replicationFactor: 1, writeConcern: 1 } };
    }
  } else {
    if (only !== undefined && !lookupCollection(db, only)) fail(404, ERR.DATA_SOURCE_NOT_FOUND);
    out.collections = inventoryOf(db, includeSystem, only);
    out.views = [];
    out.properties = { id: db.id, name: db.name, isSystem: db.name === '_system', sharding: '', replicationFactor: 1, writeConcern: 1 };
  }
  out.state = loggerStateBody().state;
  out.tick = lastTick();
  send(res, 200, out);
}

function cmdDump(req, res, db) {
  if (req.method !== 'GET') methodNotAllowed();
  needDbServer(req);
  checkQuery(req, ['collection', 'batchId', 'chunkSize', 'DBserver']);
  const cname = req.query.collection;
  if (!cname) fail(400, ERR.HTTP_BAD_PARAMETER, 'invalid collection parameter');
  // Documented as required; the handler answers 404 with errorNum 400 when it is missing.
  if (req.query.batchId === undefined) fail(404, ERR.HTTP_BAD_PARAMETER, 'replication dump - request misses batchId');
  const chunkSize = qPositiveInt(req, 'chunkSize') || 128 * 1024;
  const batch = findBatch(req.query.batchId, db);
  if (!batch) fail(404, ERR.CURSOR_NOT_FOUND, 'context was not found');
  let snap = batch.snapshot.get(cname);
  if (!snap) for (const s of batch.snapshot.values()) if (s.id === cname) snap = s;
  if (!snap) fail(404, ERR.DATA_SOURCE_NOT_FOUND);
  const key = snap.id;
  let pos = batch.cursors.get(key) || 0;
  const lines = [];
  let size = 0;
  let included = '0';
  while (pos < snap.entries.length && (lines.length === 0 || size < chunkSize)) {
    const e = snap.entries[pos++];
    const line = config.dump_format === 'documented'
      ? JSON.stringify({ tick: e.tick, type: e.type === 3 ? 2301 : 2300, key: e.doc._key, rev: e.doc._rev, data: e.doc })
      : JSON.stringify({ type: 2300, data: e.doc });
    lines.push(line);
    size += line.length + 1;
    included = e.tick;
  }
  batch.cursors.set(key, pos);
  const headers = {
    'content-type': 'application/x-arango-dump; charset=utf-8',
    'x-arango-replication-checkmore': pos < snap.entries.length ? 'true' : 'false',
    'x-arango-replication-lastincluded': lines.length ? included : '0',
  };
  if (!lines.length) return send(res, 204, null, headers);
  send(res, 200, lines.join('\n') + '\n', headers);
}

function cmdClusterInventory(req, res, db) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, ['includeSystem']);
  const includeSystem = qBool(req, 'includeSystem', true);
  if (config.role !== 'coordinator') fail(403, ERR.CLUSTER_ONLY_ON_COORDINATOR);
  const collections = inventoryOf(db, includeSystem).map((c) => ({ ...c, planVersion: 1, isReady: true, allInSync: true }));
  send(res, 200, { collections, views: [], tick: lastTick(), state: 'unused' });
}

// ---- replication: logger ----
function cmdLoggerState(req, res) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, []);
  send(res, 200, loggerStateBody());
}

function firstTick() { return state.wal.length ? state.wal[0].tick : lastTick(); }

function cmdLoggerFirstTick(req, res) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, []);
  send(res, 200, { firstTick: firstTick() });
}

function cmdServerId(req, res) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, []);
  send(res, 200, { serverId: SERVER_ID });
}

// ---- replication: applier ----
const APPLIER_CONFIG_SPEC = {
  endpoint: 'string', database: 'string', username: 'string', password: 'string', jwt: 'string',
  maxConnectRetries: 'integer', lockTimeoutRetries: 'integer', connectTimeout: 'number', requestTimeout: 'number',
  chunkSize: 'integer', skipCreateDrop: 'boolean', autoStart: 'boolean', adaptivePolling: 'boolean',
  autoResync: 'boolean', autoResyncRetries: 'integer', includeSystem: 'boolean', includeFoxxQueues: 'boolean',
  requireFromPresent: 'boolean', verbose: 'boolean', incremental: 'boolean', restrictType: 'string',
  restrictCollections: 'strings', connectionRetryWaitTime: 'number', initialSyncMaxWaitTime: 'number',
  idleMinWaitTime: 'number', idleMaxWaitTime: 'number', maxPacketSize: 'integer', ignoreErrors: 'integer',
};

const SYNC_SPEC = {
  endpoint: 'string', database: 'string', username: 'string', password: 'string', includeSystem: 'boolean',
  incremental: 'boolean', restrictType: 'string', restrictCollections: 'strings', initialSyncMaxWaitTime: 'number',
};

function defaultApplierConfig(dbName) {
  return {
    endpoint: '', database: dbName, username: '', password: '', maxConnectRetries: 100, lockTimeoutRetries: 0,
    connectTimeout: 10, requestTimeout: 600, chunkSize: 0, skipCreateDrop: false, autoStart: false,
    adaptivePolling: true, autoResync: false, autoResyncRetries: 2, includeSystem: true, includeFoxxQueues: false,
    requireFromPresent: true, verbose: false, incremental: false, restrictType: '', restrictCollections: [],
    connectionRetryWaitTime: 15, initialSyncMaxWaitTime: 300, idleMinWaitTime: 1, idleMaxWaitTime: 2.5,
    maxPacketSize: 536870912, ignoreErrors: 0, sslProtocol: 0,
  };
}

function newApplier(dbName) {
  return {
    dbName, config: defaultApplierConfig(dbName), running: false, phase: 'inactive', started: null,
    lastAppliedContinuousTick: null, lastProcessedContinuousTick: null, lastAvailableContinuousTick: null,
    safeResumeTick: null,
    progress: { time: isoTimeSafe(), message: `applier initially created for database '${dbName}'`, failedConnects: 0 },
    totalRequests: 0, totalFailedConnects: 0, totalEvents: 0, totalDocuments: 0, totalRemovals: 0,
    totalResyncs: 0, totalOperationsExcluded: 0, totalApplyTime: 0, averageApplyTime: 0,
    totalFetchTime: 0, averageFetchTime: 0, lastError: {}, timer: null, failures: 0,
  };
}

function isoTimeSafe() { return state ? isoTime() : new Date().toISOString().replace(/\.\d+Z$/, 'Z'); }

function applierConfigBody(a) {
  const c = a.config;
  const out = {};
  if (c.endpoint) out.endpoint = c.endpoint;
  if (c.database) out.database = c.database;
  if (c.username) out.username = c.username;
  for (const k of ['verbose', 'incremental', 'requestTimeout', 'connectTimeout', 'ignoreErrors', 'maxConnectRetries',
                   'lockTimeoutRetries', 'sslProtocol', 'chunkSize', 'skipCreateDrop', 'autoStart', 'adaptivePolling',
                   'autoResync', 'autoResyncRetries', 'maxPacketSize', 'includeSystem', 'includeFoxxQueues',
                   'requireFromPresent', 'restrictType', 'restrictCollections', 'connectionRetryWaitTime',
                   'initialSyncMaxWaitTime', 'idleMinWaitTime', 'idleMaxWaitTime']) out[k] = c[k];
  return out; // the password is never sent back
}

function applierStateBody(a) {
  const s = {
    started: a.started, running: a.running, phase: a.phase,
    lastAppliedContinuousTick: a.lastAppliedContinuousTick, lastProcessedContinuousTick: a.lastProcessedContinuousTick,
    lastAvailableContinuousTick: a.lastAvailableContinuousTick, safeResumeTick: a.safeResumeTick,
  };
  if (a.running) {
    s.ticksBehind = a.lastAvailableContinuousTick && a.lastAppliedContinuousTick
      ? Math.max(0, tickNum(a.lastAvailableContinuousTick) - tickNum(a.lastAppliedContinuousTick)) : 0;
  }
  Object.assign(s, {
    progress: a.progress, totalRequests: a.totalRequests, totalFailedConnects: a.totalFailedConnects,
    totalEvents: a.totalEvents, totalDocuments: a.totalDocuments, totalRemovals: a.totalRemovals,
    totalResyncs: a.totalResyncs, totalOperationsExcluded: a.totalOperationsExcluded,
    totalApplyTime: a.totalApplyTime, averageApplyTime: a.averageApplyTime, totalFetchTime: a.totalFetchTime,
    averageFetchTime: a.averageFetchTime, lastError: a.lastError, time: isoTime(),
  });
  return { state: s, server: serverInfo(), endpoint: a.config.endpoint, database: a.config.database };
}

// Validation as ReplicationApplierConfiguration::validate does it.
function validateConfig(c) {
  if (!c.endpoint) fail(400, ERR.REPLICATION_INVALID_APPLIER_CONFIGURATION, 'invalid value for <endpoint>');
  if (!['', 'include', 'exclude'].includes(c.restrictType)) {
    fail(400, ERR.REPLICATION_INVALID_APPLIER_CONFIGURATION, 'invalid value for <restrictType>');
  }
  if ((c.restrictType === '' && c.restrictCollections.length) || (c.restrictType !== '' && !c.restrictCollections.length)) {
    fail(400, ERR.REPLICATION_INVALID_APPLIER_CONFIGURATION, 'invalid value for <restrictCollections> or <restrictType>');
  }
}

// The leader an endpoint names: this fake itself, or nothing reachable.
function leaderFor(endpoint) {
  const m = /^(?:tcp|http\+tcp|ssl|http\+ssl):\/\/(127\.0\.0\.1|localhost):(\d+)$/.exec(endpoint || '');
  return m && Number(m[2]) === state.port;
}

function relevant(a, m, leaderDb) {
  if (m.db !== leaderDb) return false;
  const c = m.cuid && [...(state.dbs.get(leaderDb) || { collections: new Map() }).collections.values()].find((x) => x.cuid === m.cuid);
  const name = c ? c.name : '';
  if (name.startsWith('_') && !a.config.includeSystem) return false;
  if (a.config.restrictType === 'include' && name && !a.config.restrictCollections.includes(name)) return false;
  if (a.config.restrictType === 'exclude' && a.config.restrictCollections.includes(name)) return false;
  return true;
}

function stopApplierTimer(a) {
  if (a.timer) clearInterval(a.timer);
  a.timer = null;
}

function applierStep(a) {
  const t = isoTime();
  a.totalRequests += 1;
  if (!leaderFor(a.config.endpoint)) {
    a.failures += 1;
    a.totalFailedConnects += 1;
    a.progress = { time: t, message: `fetching leader state information failed`, failedConnects: a.failures };
    a.lastError = { errorNum: ERR.REPLICATION_NO_RESPONSE[0],
                    errorMessage: `could not connect to leader at ${a.config.endpoint} for URL /_api/replication/logger-state: Could not connect`,
                    time: t };
    if (a.failures >= a.config.maxConnectRetries) stopApplier(a, 'applier stopped after too many failed connection attempts');
    return;
  }
  a.failures = 0;
  const leaderDb = a.config.database || a.dbName;
  const from = tickNum(a.lastAppliedContinuousTick || '0');
  if (a.config.requireFromPresent && from > 0 && state.wal.length && from < tickNum(state.wal[0].tick) - 1) {
    a.lastError = { errorNum: ERR.REPLICATION_START_TICK_NOT_PRESENT[0],
                    errorMessage: `start tick ${from} is not present on the leader anymore`, time: t };
    stopApplier(a, 'applier stopped: start tick not present');
    return;
  }
  a.lastAvailableContinuousTick = lastTick();
  let taken = 0;
  for (const m of state.wal) {
    if (tickNum(m.tick) <= from) continue;
    if (taken >= config.apply_rate) break;
    if (relevant(a, m, leaderDb)) {
      a.totalEvents += 1;
      if (m.type === 2300) a.totalDocuments += 1;
      if (m.type === 2302) a.totalRemovals += 1;
    } else if (m.db === leaderDb) {
      a.totalOperationsExcluded += 1;
    }
    a.lastAppliedContinuousTick = a.lastProcessedContinuousTick = a.safeResumeTick = m.tick;
    taken += 1;
  }
  if (taken < config.apply_rate) { // caught up: everything up to the leader's last tick was scanned
    a.lastAppliedContinuousTick = a.lastProcessedContinuousTick = a.safeResumeTick = lastTick();
  }
  a.totalApplyTime += 0.0001 * taken;
  a.averageApplyTime = a.totalEvents ? a.totalApplyTime / a.totalEvents : 0;
  a.totalFetchTime += 0.0002;
  a.averageFetchTime = a.totalFetchTime / a.totalRequests;
  a.progress = { time: t, message: taken ? `applied ${taken} log events, last applied tick ${a.lastAppliedContinuousTick}`
                                          : `fetching leader log from tick ${a.lastAppliedContinuousTick}`, failedConnects: 0 };
}

function startApplier(a, from) {
  if (a.running) return;
  a.running = true;
  a.phase = 'running';
  a.started = isoTime();
  a.failures = 0;
  a.lastError = {};
  if (from !== undefined) a.lastAppliedContinuousTick = a.lastProcessedContinuousTick = from;
  else if (!a.lastAppliedContinuousTick) a.lastAppliedContinuousTick = a.lastProcessedContinuousTick = '0';
  a.progress = { time: a.started, message: 'applier started', failedConnects: 0 };
  a.timer = setInterval(() => applierStep(a), config.apply_interval_ms);
  a.timer.unref();
}

function stopApplier(a, message) {
  stopApplierTimer(a);
  if (!a.running) return;
  a.running = false;
  a.phase = 'inactive';
  a.progress = { time: isoTime(), message: message || 'applier shut down', failedConnects: a.progress.failedConnects || 0 };
}

function forgetApplier(a) {
  stopApplier(a);
  const fresh = newApplier(a.dbName);
  for (const k of Object.keys(fresh)) if (k !== 'config') a[k] = fresh[k];
}

function commonApplierQuery(req, extra) {
  checkQuery(req, ['global'].concat(extra || []));
  if (qBool(req, 'global', false) && req.dbName !== '_system') {
    fail(400, ERR.HTTP_BAD_PARAMETER, 'global applier operations are only possible from within the _system database');
  }
}

function cmdApplierConfig(req, res, db) {
  commonApplierQuery(req);
  const a = db.applier;
  if (req.method === 'GET') return send(res, 200, applierConfigBody(a));
  if (req.method !== 'PUT') methodNotAllowed();
  const b = bodyObject(req);
  checkBody(b, APPLIER_CONFIG_SPEC);
  if (a.running) fail(400, ERR.REPLICATION_RUNNING);
  const next = { ...a.config, ...b };
  if (b.restrictCollections) next.restrictCollections = [...b.restrictCollections];
  validateConfig(next);
  a.config = next;
  send(res, 200, applierConfigBody(a));
}

function cmdApplierStart(req, res, db) {
  if (req.method !== 'PUT') methodNotAllowed();
  commonApplierQuery(req, ['from', 'barrierId']);
  const from = qTick(req, 'from');
  const a = db.applier;
  if (!a.config.endpoint) fail(400, ERR.REPLICATION_INVALID_APPLIER_CONFIGURATION, 'no endpoint configured');
  if (!a.config.database) fail(400, ERR.REPLICATION_INVALID_APPLIER_CONFIGURATION, 'no database configured');
  startApplier(a, from);
  send(res, 200, applierStateBody(a));
}

function cmdApplierStop(req, res, db) {
  if (req.method !== 'PUT') methodNotAllowed();
  commonApplierQuery(req);
  stopApplier(db.applier);
  send(res, 200, applierStateBody(db.applier));
}

function cmdApplierState(req, res, db) {
  commonApplierQuery(req);
  if (req.method === 'DELETE') {
    forgetApplier(db.applier);
    return send(res, 200, applierStateBody(db.applier));
  }
  if (req.method !== 'GET') methodNotAllowed();
  send(res, 200, applierStateBody(db.applier));
}

function syncCollections(localDb, leaderDb, cfg) {
  const out = [];
  for (const c of leaderDb.collections.values()) {
    if (c.isSystem && cfg.includeSystem === false) continue;
    if (cfg.restrictType === 'include' && !cfg.restrictCollections.includes(c.name)) continue;
    if (cfg.restrictType === 'exclude' && cfg.restrictCollections.includes(c.name)) continue;
    out.push(c);
  }
  if (localDb !== leaderDb) { // copy the data: purge and refill, as the initial syncer does
    for (const c of out) {
      const local = localDb.collections.get(c.name) || createCollection(localDb, c.name, c.type, c.isSystem);
      for (const key of [...local.docs.keys()]) removeDoc(localDb, local, key);
      for (const e of c.docs.values()) writeDoc(localDb, local, e.doc);
    }
  }
  return out;
}

function leaderDatabase(cfg, localDb) {
  if (!leaderFor(cfg.endpoint)) {
    fail(500, ERR.REPLICATION_NO_RESPONSE, `could not connect to leader at ${cfg.endpoint} for URL /_api/replication/inventory: Could not connect`);
  }
  const leaderDb = state.dbs.get(cfg.database || localDb.name);
  if (!leaderDb) {
    fail(500, ERR.REPLICATION_LEADER_ERROR, `got invalid response from leader at ${cfg.endpoint}: HTTP 404: database not found`);
  }
  return leaderDb;
}

function cmdSync(req, res, db) {
  if (req.method !== 'PUT') methodNotAllowed();
  checkQuery(req, ['global']);
  const b = bodyObject(req);
  checkBody(b, SYNC_SPEC);
  if (!b.endpoint) fail(400, ERR.HTTP_BAD_PARAMETER, '<endpoint> must be a valid endpoint');
  const cfg = { ...defaultApplierConfig(db.name), ...b, restrictCollections: b.restrictCollections || [] };
  validateConfig(cfg);
  if (db.applier.running) fail(400, ERR.REPLICATION_RUNNING);
  const leaderDb = leaderDatabase(cfg, db);
  const tick = lastTick();
  const cols = syncCollections(db, leaderDb, cfg);
  send(res, 200, { collections: cols.map((c) => ({ id: c.id, name: c.name })), lastLogTick: tick });
}

function cmdMakeFollower(req, res, db) {
  if (req.method !== 'PUT') methodNotAllowed();
  checkQuery(req, ['global']);
  const b = bodyObject(req);
  checkBody(b, APPLIER_CONFIG_SPEC);
  const a = db.applier;
  const cfg = { ...defaultApplierConfig(db.name), ...b, restrictCollections: b.restrictCollections || [], skipCreateDrop: false };
  validateConfig(cfg);
  forgetApplier(a);
  a.config = cfg;
  if (!leaderFor(cfg.endpoint)) {
    a.lastError = { errorNum: ERR.REPLICATION_NO_RESPONSE[0],
                    errorMessage: `could not connect to leader at ${cfg.endpoint}: Could not connect`, time: isoTime() };
    a.totalFailedConnects += 1;
    return send(res, 200, applierStateBody(a));
  }
  const leaderDb = leaderDatabase(cfg, db);
  const tick = lastTick();
  syncCollections(db, leaderDb, cfg);
  startApplier(a, tick);
  a.lastAvailableContinuousTick = lastTick();
  send(res, 200, applierStateBody(a));
}

// ---- WAL access ----
function trackClient(req, servedTick) {
  const syncerId = req.query.syncerId;
  const serverId = req.query.serverId;
  if (!syncerId && !serverId) return;
  const key = `${syncerId || ''}/${serverId || ''}`;
  const t = now();
  state.clients.set(key, { syncerId: syncerId || '0', serverId: serverId || '0', clientInfo: req.query.clientInfo || '',
                           time: isoTime(t), expires: isoTime(t + 300000), lastServedTick: servedTick });
}

function walTail(req, res, db) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, ['global', 'from', 'to', 'lastScanned', 'chunkSize', 'syncerId', 'serverId', 'clientInfo', 'barrierId']);
  const global = qBool(req, 'global', false);
  if (global && db.name !== '_system') fail(400, ERR.HTTP_BAD_PARAMETER, 'global tailing is only possible from within _system database');
  const from = qTick(req, 'from');
  const to = qTick(req, 'to');
  qTick(req, 'lastScanned');
  for (const k of ['syncerId', 'serverId']) qPositiveInt(req, k);
  const chunkSize = qPositiveInt(req, 'chunkSize') || 1024 * 1024;
  const fromN = tickNum(from || '0');
  const toN = to === undefined ? Infinity : tickNum(to);
  if (fromN > toN) fail(400, ERR.HTTP_BAD_PARAMETER, 'invalid from/to values');
  const first = state.wal.length ? tickNum(state.wal[0].tick) : tickNum(lastTick()) + 1;
  const fromPresent = fromN === 0 || fromN >= first - 1;
  const lines = [];
  let size = 0;
  let included = '0';
  let scanned = from || '0';
  let more = false;
  for (const m of state.wal) {
    const t = tickNum(m.tick);
    if (t <= fromN) continue;
    if (t > toN) break;
    if (lines.length && size >= chunkSize) { more = true; break; }
    scanned = m.tick;
    if (!global && m.db !== db.name) continue;
    const line = JSON.stringify(m);
    lines.push(line);
    size += line.length + 1;
    included = m.tick;
  }
  trackClient(req, lines.length ? included : from || '0');
  const headers = {
    'content-type': 'application/x-arango-dump; charset=utf-8',
    'x-arango-replication-active': 'true',
    'x-arango-replication-checkmore': more ? 'true' : 'false',
    'x-arango-replication-frompresent': fromPresent ? 'true' : 'false',
    'x-arango-replication-lastincluded': included,
    'x-arango-replication-lastscanned': scanned,
    'x-arango-replication-lasttick': lastTick(),
  };
  if (!lines.length) return send(res, 204, null, headers);
  send(res, 200, lines.join('\n') + '\n', headers);
}

function walRange(req, res) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, []);
  send(res, 200, { time: isoTime(), tickMin: firstTick(), tickMax: lastTick(), server: serverInfo() });
}

function walLastTick(req, res) {
  if (req.method !== 'GET') methodNotAllowed();
  checkQuery(req, []);
  send(res, 200, { time: isoTime(), tick: lastTick(), server: serverInfo() });
}

// ---- routing ----
const REPLICATION = {
  batch: cmdBatch, inventory: cmdInventory, dump: cmdDump, clusterInventory: cmdClusterInventory,
  'logger-state': cmdLoggerState, 'logger-first-tick': cmdLoggerFirstTick, 'server-id': cmdServerId,
  'applier-config': cmdApplierConfig, 'applier-start': cmdApplierStart, 'applier-stop': cmdApplierStop,
  'applier-state': cmdApplierState, sync: cmdSync, 'make-follower': cmdMakeFollower, 'make-slave': cmdMakeFollower,
};
const COORDINATOR_UNSUPPORTED = ['logger-first-tick', 'applier-start', 'applier-stop', 'sync', 'make-follower', 'make-slave'];

function unsupported(req, what) {
  const style = config.removed_style;
  if (style === 'not_found') fail(404, ERR.HTTP_NOT_FOUND, `unknown path '${req.path}'`);
  if (style === 'not_implemented') fail(501, ERR.NOT_IMPLEMENTED);
  fail(400, ERR.HTTP_BAD_PARAMETER, `invalid command '${what}'`);
}

function replication(req, res, db, rest) {
  const command = rest[0];
  if (!command) fail(400, ERR.HTTP_SUPERFLUOUS_SUFFICES, 'expecting URL /_api/replication/<command>');
  const handler = REPLICATION[command];
  if (!handler || removedCommands().includes(command)) return unsupported(req, command);
  if (command !== 'batch' && rest.length > 1) fail(400, ERR.HTTP_SUPERFLUOUS_SUFFICES, 'expecting URL /_api/replication/<command>');
  if (config.role === 'coordinator' && COORDINATOR_UNSUPPORTED.includes(command)) {
    fail(501, ERR.CLUSTER_UNSUPPORTED, 'replication API is not supported on a coordinator');
  }
  return handler(req, res, db, rest.slice(1));
}

function wal(req, res, db, rest) {
  const fn = { tail: walTail, range: walRange, lastTick: walLastTick }[rest[0]];
  // a server before 3.3 has no /_api/wal: "removed": ["wal/tail", ...] makes it so
  if (!fn || rest.length !== 1 || removedCommands().includes(`wal/${rest[0]}`)) {
    fail(404, ERR.HTTP_NOT_FOUND, `unknown path '${req.path}'`);
  }
  if (config.role === 'coordinator') fail(501, ERR.CLUSTER_UNSUPPORTED, 'wal access is not supported on a coordinator');
  return fn(req, res, db);
}

function route(req, res) {
  let segs = req.path.split('/').slice(1).map(decodeURIComponent);
  let dbName = '_system';
  if (segs[0] === '_db') {
    dbName = segs[1] || '';
    segs = segs.slice(2);
  }
  if (segs[0] === '_open' && segs[1] === 'auth' && segs.length === 2) return openAuth(req, res);
  if (!authorized(req)) {
    fail(401, ERR.HTTP_UNAUTHORIZED, 'not authorized to execute this request',
         { 'www-authenticate': 'Bearer token_type="JWT", realm="ArangoDB"' });
  }
  const db = state.dbs.get(dbName);
  if (!db) fail(404, ERR.DATABASE_NOT_FOUND);
  req.dbName = dbName;
  if (segs[0] !== '_api') fail(404, ERR.HTTP_NOT_FOUND, `unknown path '${req.path}'`);
  const rest = segs.slice(2);
  switch (segs[1]) {
    case 'version':
      if (req.method !== 'GET') methodNotAllowed();
      return send(res, 200, { server: 'arango', version: config.version, license: 'community' });
    case 'database': return apiDatabase(req, res, db, rest);
    case 'collection': return apiCollection(req, res, db, rest);
    case 'document': return apiDocument(req, res, db, rest);
    case 'replication': return replication(req, res, db, rest);
    case 'wal': return wal(req, res, db, rest);
    default: fail(404, ERR.HTTP_NOT_FOUND, `unknown path '${req.path}'`);
  }
}

function control(req, res) {
  const body = req.body ? JSON.parse(req.body) : {};
  switch (`${req.method} ${req.path}`) {
    case 'POST /_fake/reset': {
      const port = state.port;
      reset();
      state.port = port;
      return send(res, 200, { ok: true });
    }
    case 'POST /_fake/config':
      Object.assign(config, body);
      return send(res, 200, { ok: true, config });
    case 'GET /_fake/log':
      return send(res, 200, { requests: state.log });
    case 'POST /_fake/expire_tokens':
      state.tokens.clear();
      return send(res, 200, { ok: true });
    case 'POST /_fake/advance_time':
      state.clockOffsetMs += Number(body.seconds || 0) * 1000;
      return send(res, 200, { ok: true });
    case 'POST /_fake/prune_wal':
      state.wal = state.wal.filter((m) => tickNum(m.tick) >= tickNum(body.before));
      return send(res, 200, { ok: true, first: firstTick() });
    case 'GET /_fake/state': {
      const batches = [];
      for (const b of state.batches.values()) {
        batches.push({ id: b.id, db: b.db, ttl: b.ttl, expires_in: (b.expires - now()) / 1000 });
      }
      const appliers = {};
      const collections = {};
      for (const d of state.dbs.values()) {
        appliers[d.name] = { running: d.applier.running, config: d.applier.config };
        collections[d.name] = {};
        for (const c of d.collections.values()) collections[d.name][c.name] = c.docs.size;
      }
      return send(res, 200, { tick: lastTick(), batches, appliers, wal_first_tick: firstTick(), collections });
    }
    default:
      return send(res, 404, { error: 'not_found', reason: 'unknown fake control endpoint' });
  }
}

function main() {
  config = defaultConfig();
  if (process.argv[2]) Object.assign(config, JSON.parse(process.argv[2]));
  reset();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      req.body = Buffer.concat(chunks).toString('utf8');
      const u = new URL(req.url, 'http://127.0.0.1');
      req.path = u.pathname;
      req.query = {};
      for (const [k, v] of u.searchParams) if (!(k in req.query)) req.query[k] = v;
      try {
        if (req.path.startsWith('/_fake/')) return control(req, res);
        state.log.push({ method: req.method, path: req.path, url: req.url, query: req.query, headers: req.headers,
                         body: req.body, t: Date.now() - START });
        route(req, res);
      } catch (e) {
        if (e instanceof ArangoError) return sendError(res, e);
        console.error(e);
        send(res, 500, { code: 500, error: true, errorMessage: `fake_arango internal error: ${e.message}`, errorNum: 4 });
      }
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(0, '127.0.0.1', () => {
    state.port = server.address().port;
    process.stdout.write(`PORT ${state.port}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

main();
