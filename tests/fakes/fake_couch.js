#!/usr/bin/env node
// FAKE CouchDB for the tests -- NOT a real server.
//
// It stands in for what the real test server (pouchdb-server) cannot produce on demand:
// failures (5xx, 429 + Retry-After, stalled / truncated / closed / non-JSON answers,
// slow answers), the three auth flows (basic, cookie session, IAM bearer token) with
// their failure modes, and a log of every request it saw. Where it answers like CouchDB it
// answers as Apache CouchDB 3.4.3 did in the recordings (fixtures/couchdb-3.4.3 beside
// DESIGN.md): the welcome body, /_up, /_session, 401/404/409/412 bodies, and the
// `content-type: application/json` + `cache-control: must-revalidate` headers with a
// compact JSON body ending in a newline.
//
// Start:  node fake_couch.js ['<json config>']
//   Listens on 127.0.0.1, port 0; prints "PORT <n>" on stdout. Exits when its stdin
//   closes (so it never outlives the test that started it) or on SIGTERM/SIGINT.
//
// Config (argv[2] as JSON, or POST /_fake/config, merged):
//   users          {"name": "password", ...}       accepted by basic auth and /_session
//   require_auth   false | true   every non-/_fake, non-/_session, non-/_up, non-token
//                  request needs valid credentials (basic, AuthSession cookie or Bearer)
//   api_keys       ["key", ...]                    accepted by POST /identity/token
//   token_expires_in  seconds (3600)               expires_in of the IAM tokens issued
//
// Control endpoints (never logged, never need auth):
//   POST /_fake/script   {"path": "/db/doc", "method": "GET" (optional),
//                         "responses": [ {...}, ... ]}
//       Each response is used once (or "times": n; -1 = forever), then the next one;
//       when a script is used up the default handler answers again (logins, POST
//       /_session and /identity/token, included). A response:
//         status (200), body (JSON value; a string is sent as is), headers {name: value},
//         delay (ms before answering), retry_after (seconds: Retry-After header),
//         behaviour: "stall"    send the headers, never finish the body
//                    "truncate" Content-Length larger than the body, then close
//                    "close"    close the socket without answering
//                    "not_json" 200 text/html body (content_type overrides the type)
//                    "bad_json" content-type application/json with a broken body
//   POST /_fake/reset            forget scripts, log, sessions, tokens, counters
//   POST /_fake/config           merge config (see above)
//   POST /_fake/expire_sessions  every AuthSession cookie issued so far becomes invalid
//   POST /_fake/expire_tokens    every IAM token issued so far becomes invalid
//   GET  /_fake/log              {"requests": [{method, url, path, query, headers, body,
//                                 t (ms since start)}...], "max_in_flight": n,
//                                 "in_flight": n}
//   GET  /_fake/closed_port      {"port": n}: a loopback port nothing listens on
//
// Default answers (after auth and scripts): GET / (welcome), GET /_up, /_session,
// /_all_dbs, and a tiny in-memory store: PUT/GET/HEAD/DELETE /{db}, PUT/GET/DELETE
// /{db}/{docid}. Databases "db" (with "doc1", "doc2") exist from the start.
'use strict';

const http = require('http');
const net = require('net');
const crypto = require('crypto');

const START = Date.now();

const WELCOME = {
  couchdb: 'Welcome',
  version: '3.4.3',
  git_sha: 'e12b967',
  uuid: '1348b38ba1ccdae4fd66c2541ab094a3',
  features: ['quickjs', 'access-ready', 'partitioned', 'pluggable-storage-engines', 'reshard', 'scheduler'],
  vendor: { name: 'The Apache Software Foundation' },
};

const IAM_GRANT = 'urn:ibm:params:oauth:grant-type:apikey';

let config;
let state;

function defaultConfig() {
  return { users: { admin: 'secret' }, require_auth: false, api_keys: [], token_expires_in: 3600 };
}

function freshStore() {
  const dbs = new Map();
  const db = new Map();
  db.set('doc1', { _id: 'doc1', _rev: '1-967a00dff5e02add41819138abb3284d', value: 1 });
  db.set('doc2', { _id: 'doc2', _rev: '1-7051cbe5c8faecd085a3fa619e6e6337', value: 2 });
  dbs.set('db', db);
  return dbs;
}

function reset() {
  state = {
    scripts: new Map(), // key "METHOD path" or "* path" -> [response...]
    log: [],
    inFlight: 0,
    maxInFlight: 0,
    sessions: new Map(), // cookie value -> user name
    tokens: new Map(), // token -> expiry (ms since epoch)
    dbs: freshStore(),
  };
}

config = defaultConfig();
if (process.argv[2]) Object.assign(config, JSON.parse(process.argv[2]));
reset();

// ---- answering ----

function send(res, status, body, extraHeaders) {
  const text = typeof body === 'string' ? body : JSON.stringify(body) + '\n';
  const headers = Object.assign({
    'Server': 'CouchDB/3.4.3 (Erlang OTP/25)',
    'Content-Type': 'application/json',
    'Cache-Control': 'must-revalidate',
    'Content-Length': Buffer.byteLength(text),
  }, extraHeaders || {});
  res.writeHead(status, headers);
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

function err(res, status, error, reason, extra) {
  send(res, status, { error, reason }, extra);
}

const UNAUTHORIZED_LOGIN = 'Name or password is incorrect.';
const UNAUTHORIZED_DB = 'You are not authorized to access this db.';

// ---- auth ----

function parseCookies(h) {
  const out = {};
  for (const part of (h || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

// -> {user, via} for valid credentials, {fail: reason} for wrong ones, {} for none
function identify(req) {
  const auth = req.headers['authorization'] || '';
  if (/^basic /i.test(auth)) {
    const dec = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const i = dec.indexOf(':');
    const name = i >= 0 ? dec.slice(0, i) : dec;
    const pw = i >= 0 ? dec.slice(i + 1) : '';
    if (Object.prototype.hasOwnProperty.call(config.users, name) && config.users[name] === pw)
      return { user: name, via: 'default' };
    return { fail: UNAUTHORIZED_LOGIN };
  }
  if (/^bearer /i.test(auth)) {
    const tok = auth.slice(7).trim();
    const exp = state.tokens.get(tok);
    if (exp && exp > Date.now()) return { user: 'iam-user', via: 'iam' };
    return { fail: UNAUTHORIZED_DB, bearer: true };
  }
  const cookie = parseCookies(req.headers['cookie']).AuthSession;
  if (cookie !== undefined) {
    const user = state.sessions.get(cookie);
    if (user) return { user, via: 'cookie' };
    // CouchDB ignores a stale cookie: the request goes on as anonymous
    return { stale: true };
  }
  return {};
}

function rolesOf(user) { return user === 'admin' ? ['_admin'] : []; }

// ---- request handling ----

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

function parseJson(text) {
  try { return JSON.parse(text); } catch (e) { return undefined; }
}

function takeScripted(method, path) {
  for (const key of [method + ' ' + path, '* ' + path]) {
    const list = state.scripts.get(key);
    if (!list || list.length === 0) continue;
    const r = list[0];
    if (r.times === undefined) r.times = 1;
    if (r.times > 0) {
      r.times -= 1;
      if (r.times === 0) list.shift();
    }
    return r;
  }
  return null;
}

function playScripted(req, res, r, next) {
  const go = () => {
    const extra = Object.assign({}, r.headers || {});
    if (r.retry_after !== undefined) extra['Retry-After'] = String(r.retry_after);
    const status = r.status || 200;
    switch (r.behaviour || r.behavior) {
      case 'stall':
        res.writeHead(status, Object.assign({ 'Content-Type': 'application/json', 'Content-Length': 1000 }, extra));
        res.flushHeaders();
        res.write('{"ok":');
        return; // never finished
      case 'truncate': {
        const text = '{"_id":"truncated","pad":"';
        res.writeHead(status, Object.assign({ 'Content-Type': 'application/json', 'Content-Length': 4096 }, extra));
        res.write(text, () => setTimeout(() => req.socket.destroy(), 20));
        return;
      }
      case 'close':
        req.socket.destroy();
        return;
      case 'not_json':
        send(res, status, typeof r.body === 'string' ? r.body :
          '<html><head><title>Proxy</title></head><body><h1>Welcome to the proxy</h1></body></html>\n',
        Object.assign({ 'Content-Type': r.content_type || 'text/html; charset=utf-8' }, extra));
        return;
      case 'bad_json':
        send(res, status, typeof r.body === 'string' ? r.body : '{"ok": tru', Object.assign({
          'Content-Type': 'application/json' }, extra));
        return;
      default:
        if (r.body === undefined && !r.status) return next(); // e.g. only a delay
        send(res, status, r.body === undefined ? '' : r.body, extra);
    }
  };
  if (r.delay) setTimeout(go, r.delay);
  else go();
}

async function handleControl(req, res, path, text) {
  const body = text ? parseJson(text) : undefined;
  if (req.method === 'GET' && path === '/_fake/log') {
    return send(res, 200, { requests: state.log, max_in_flight: state.maxInFlight, in_flight: state.inFlight });
  }
  if (req.method === 'GET' && path === '/_fake/closed_port') {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = srv.address().port;
      srv.close(() => send(res, 200, { port }));
    });
    return;
  }
  if (req.method !== 'POST') return err(res, 405, 'method_not_allowed', 'Only POST allowed');
  switch (path) {
    case '/_fake/script': {
      if (!body || typeof body.path !== 'string' || !Array.isArray(body.responses))
        return err(res, 400, 'bad_request', 'expected {"path": ..., "responses": [...]}');
      const key = (body.method || '*').toUpperCase() + ' ' + body.path;
      const list = state.scripts.get(key) || [];
      for (const r of body.responses) list.push(Object.assign({}, r));
      state.scripts.set(key, list);
      return send(res, 200, { ok: true, queued: list.length });
    }
    case '/_fake/reset':
      reset();
      return send(res, 200, { ok: true });
    case '/_fake/config':
      if (!body || typeof body !== 'object') return err(res, 400, 'bad_request', 'expected an object');
      Object.assign(config, body);
      return send(res, 200, { ok: true, config });
    case '/_fake/expire_sessions':
      state.sessions.clear();
      return send(res, 200, { ok: true });
    case '/_fake/expire_tokens':
      state.tokens.clear();
      return send(res, 200, { ok: true });
    default:
      return err(res, 404, 'not_found', 'no such fake control endpoint');
  }
}

function handleSession(req, res, text, who) {
  if (req.method === 'POST') {
    const ct = (req.headers['content-type'] || '').split(';')[0].trim();
    let name, password;
    if (ct === 'application/json') {
      const b = parseJson(text) || {};
      name = b.name; password = b.password;
    } else if (ct === 'application/x-www-form-urlencoded') {
      const f = new URLSearchParams(text);
      name = f.get('name'); password = f.get('password');
    } else {
      return err(res, 415, 'bad_content_type', 'Content-Type must be application/x-www-form-urlencoded or application/json');
    }
    if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(config.users, name) ||
        config.users[name] !== password) {
      return err(res, 401, 'unauthorized', UNAUTHORIZED_LOGIN);
    }
    const cookie = crypto.randomBytes(24).toString('base64url');
    state.sessions.set(cookie, name);
    return send(res, 200, { ok: true, name, roles: rolesOf(name) },
      { 'Set-Cookie': `AuthSession=${cookie}; Version=1; Path=/; HttpOnly` });
  }
  if (req.method === 'GET') {
    if (who.fail) return err(res, 401, 'unauthorized', who.fail);
    const info = { authentication_handlers: ['cookie', 'default'] };
    if (who.user) info.authenticated = who.via;
    return send(res, 200, {
      ok: true,
      userCtx: { name: who.user || null, roles: who.user ? rolesOf(who.user) : [] },
      info,
    });
  }
  if (req.method === 'DELETE') {
    return send(res, 200, { ok: true }, { 'Set-Cookie': 'AuthSession=; Version=1; Path=/; HttpOnly' });
  }
  return err(res, 405, 'method_not_allowed', 'Only GET,HEAD,POST,DELETE allowed');
}

function handleToken(req, res, text) {
  if (req.method !== 'POST') return send(res, 405, { errorCode: 'BXNIM0107E', errorMessage: 'Method not allowed' });
  const ct = (req.headers['content-type'] || '').split(';')[0].trim();
  if (ct !== 'application/x-www-form-urlencoded')
    return send(res, 400, { errorCode: 'BXNIM0109E', errorMessage: 'Property missing or empty. Content-Type is not application/x-www-form-urlencoded.' });
  const f = new URLSearchParams(text);
  const keys = [...f.keys()].sort().join(',');
  if (f.get('grant_type') !== IAM_GRANT || keys !== 'apikey,grant_type')
    return send(res, 400, { errorCode: 'BXNIM0103E', errorMessage: 'Grant type missing or not supported.' });
  if (!config.api_keys.includes(f.get('apikey')))
    return send(res, 400, { errorCode: 'BXNIM0415E', errorMessage: 'Provided API key could not be found.' });
  const token = 'fake-iam-' + crypto.randomBytes(24).toString('base64url');
  const ttl = Number(config.token_expires_in);
  state.tokens.set(token, Date.now() + ttl * 1000);
  return send(res, 200, {
    access_token: token,
    refresh_token: 'not_supported',
    token_type: 'Bearer',
    expires_in: ttl,
    expiration: Math.floor(Date.now() / 1000) + ttl,
    scope: 'ibm openid',
  });
}

function newRev(doc, old) {
  const n = old ? parseInt(old._rev, 10) + 1 : 1;
  return n + '-' + crypto.createHash('md5').update(JSON.stringify(doc) + n).digest('hex');
}

function handleDefault(req, res, path, text) {
  const m = req.method;
  if (path === '/') return m === 'GET' || m === 'HEAD' ? send(res, 200, WELCOME) : err(res, 405, 'method_not_allowed', 'Only GET,HEAD allowed');
  if (path === '/_up') return send(res, 200, { status: 'ok', seeds: {} });
  if (path === '/_all_dbs') return send(res, 200, [...state.dbs.keys()].sort());
  const parts = path.split('/').slice(1).map((p) => decodeURIComponent(p));
  const dbname = parts[0];
  if (dbname.startsWith('_')) return err(res, 400, 'illegal_database_name', `Name: '${dbname}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.`);
  const db = state.dbs.get(dbname);
  if (parts.length === 1) {
    if (m === 'PUT') {
      if (db) return err(res, 412, 'file_exists', 'The database could not be created, the file already exists.');
      state.dbs.set(dbname, new Map());
      return send(res, 201, { ok: true });
    }
    if (!db) return err(res, 404, 'not_found', 'Database does not exist.');
    if (m === 'DELETE') { state.dbs.delete(dbname); return send(res, 200, { ok: true }); }
    if (m === 'GET' || m === 'HEAD') {
      return send(res, 200, { db_name: dbname, doc_count: [...db.values()].filter((d) => !d._deleted).length,
        doc_del_count: 0, update_seq: '0-fake', sizes: { file: 0, external: 0, active: 0 }, props: {},
        purge_seq: '0-fake', disk_format_version: 8, compact_running: false,
        cluster: { q: 2, n: 1, w: 1, r: 1 }, instance_start_time: '0' });
    }
    return err(res, 405, 'method_not_allowed', 'Only DELETE,GET,HEAD,POST,PUT allowed');
  }
  if (!db) return err(res, 404, 'not_found', 'Database does not exist.');
  const id = parts.slice(1).join('/');
  const cur = db.get(id);
  if (m === 'GET' || m === 'HEAD') {
    if (!cur) return err(res, 404, 'not_found', 'missing');
    if (cur._deleted) return err(res, 404, 'not_found', 'deleted');
    return send(res, 200, cur, { ETag: `"${cur._rev}"` });
  }
  if (m === 'PUT') {
    const doc = parseJson(text);
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return err(res, 400, 'bad_request', 'Document must be a JSON object');
    const query = new URL(req.url, 'http://x').searchParams;
    const rev = doc._rev || query.get('rev');
    if (cur && !cur._deleted && cur._rev !== rev) return err(res, 409, 'conflict', 'Document update conflict.');
    doc._id = id;
    doc._rev = newRev(doc, cur);
    db.set(id, doc);
    return send(res, 201, { ok: true, id, rev: doc._rev }, { ETag: `"${doc._rev}"` });
  }
  if (m === 'DELETE') {
    const rev = new URL(req.url, 'http://x').searchParams.get('rev');
    if (!cur || cur._deleted) return err(res, 404, 'not_found', cur ? 'deleted' : 'missing');
    if (cur._rev !== rev) return err(res, 409, 'conflict', 'Document update conflict.');
    const tomb = { _id: id, _deleted: true };
    tomb._rev = newRev(tomb, cur);
    db.set(id, tomb);
    return send(res, 200, { ok: true, id, rev: tomb._rev });
  }
  return err(res, 405, 'method_not_allowed', 'Only DELETE,GET,HEAD,PUT allowed');
}

const server = http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://fake');
  const path = u.pathname;
  const control = path.startsWith('/_fake/');
  let counted = false;
  if (!control) {
    counted = true;
    state.inFlight += 1;
    if (state.inFlight > state.maxInFlight) state.maxInFlight = state.inFlight;
    let done = false;
    const finish = () => { if (!done) { done = true; state.inFlight -= 1; } };
    res.on('finish', finish);
    res.on('close', finish);
  }
  const text = await readBody(req);
  if (control) return handleControl(req, res, path, text);
  const query = {};
  for (const [k, v] of u.searchParams) query[k] = v;
  state.log.push({ method: req.method, url: req.url, path, query, headers: req.headers, body: text,
    t: Date.now() - START });
  void counted;

  const who = identify(req);
  if (path === '/identity/token' || path === '/_session') { // scripts apply to logins too
    const login = () => (path === '/_session' ? handleSession(req, res, text, who) : handleToken(req, res, text));
    const r = takeScripted(req.method, path);
    return r ? playScripted(req, res, r, login) : login();
  }
  if (path !== '/_up' && path !== '/') {
    if (who.fail) return err(res, 401, 'unauthorized', who.fail);
    if (config.require_auth && !who.user) return err(res, 401, 'unauthorized', UNAUTHORIZED_DB);
  } else if (who.fail && !who.bearer) {
    // CouchDB checks basic credentials on every path, the welcome page too
    return err(res, 401, 'unauthorized', who.fail);
  }
  const r = takeScripted(req.method, path);
  if (r) return playScripted(req, res, r, () => handleDefault(req, res, path, text));
  return handleDefault(req, res, path, text);
});

server.keepAliveTimeout = 5000;
server.on('clientError', (e, socket) => { socket.destroy(); });

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});

function quit() { process.exit(0); }
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.on('error', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
