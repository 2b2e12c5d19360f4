#!/usr/bin/env node
// HOSTILE CouchDB for the tests -- NOT a real server.
//
// A tiny in-memory CouchDB (enough of the replication protocol to be a source and a
// target: _changes, _revs_diff, _bulk_get, open_revs, _bulk_docs, _local docs, docs,
// _all_docs) that misbehaves on purpose, one way per database, so a test can prove that
// couchlua answers each misbehaviour with a structured error or a correct result and
// never reports a document written that is not on the target.
//
// Start:  node hostile.js
//   Listens on 127.0.0.1, port 0; prints "PORT <n>" on stdout. Exits when its stdin
//   closes (so it never outlives the test that started it) or on SIGTERM/SIGINT.
//
// A mode is chosen per database through the control endpoints (never affected by modes):
//   PUT  /_hostile/mode/<db>  {"mode": "<name>[,<name>...]"}  ("" or "normal": behave);
//                             <db> = "_root" sets the mode of GET / (server info)
//   GET  /_hostile/db/<db>    {"exists": bool, "docs": {id: [leaf revs]}} (the truth)
//   GET  /_hostile/log        {"requests": [{method, path, db}...]}
//   POST /_hostile/reset      forget every database, mode and the log
//
// Modes (they act on requests to that database only; control reads are never affected):
//   bulk_get_short       _bulk_get answers only the first half of the revisions asked
//   bulk_get_other_id    _bulk_get and open_revs answer each doc with another _id
//   bulk_get_no_rev      _bulk_get and open_revs answer each doc without its _rev
//   missing              _bulk_get and open_revs answer {"missing": rev} (pouchdb-server's
//                        shape) for the documents whose id ends in an odd character code
//   flat_errors          the same documents answered {"error": "not_found", "reason":
//                        "missing"}: pouchdb-server's _bulk_get error shape, no id, no rev
//   bulk_get_html        _bulk_get: 200 text/html
//   bulk_get_truncated   _bulk_get: 200 application/json, the body cut in half
//   bulk_get_empty       _bulk_get: 200 with an empty body
//   no_bulk_get          _bulk_get: 404 (the client falls back to open_revs)
//   open_revs_empty      GET doc?open_revs=...: 200 [] (no answer for any revision)
//   bulk_docs_object     _bulk_docs: {"ok":true} instead of a list; nothing is written
//   bulk_docs_short      _bulk_docs: writes and answers only the first half of the docs
//   bulk_docs_500        _bulk_docs: 500 every time (sustained failures)
//   unauthorized         every request: 401
//   redirect             every request: 301 with Location: https://<same host and path>
//   empty                every request: 2xx with an empty body (201 for PUT/POST)
//   changes_no_changes   _changes rows carry no "changes" member
//   changes_empty        _changes: 200 with an empty body
//   changes_instant      _changes: answers at once (long-poll or not) with no rows and
//                        last_seq = since: a server that never holds the long-poll
//   changes_not_table    _changes: 200 application/json "not a changes answer" (a string)
//   endless_body         every GET: 200, a chunked JSON body that never ends
//   gzip_bomb            every GET: 200 gzip, ~1 MB on the wire that inflates to 1 GiB of
//                        JSON white space (sent whatever Accept-Encoding says)
//   huge_header          every request: a 1 MB header line before the answer
//   throttle:<n>         the next n requests answer 429 with Retry-After: 1, then behave
'use strict';

const http = require('http');
const crypto = require('crypto');
const zlib = require('zlib');

let dbs, modes, log, throttles; // throttles: db -> 429 answers still to give (throttle:<n>)
function reset() { dbs = new Map(); modes = new Map(); log = []; throttles = new Map(); }
reset();

function send(res, status, body, headers) {
  const text = body === undefined ? '' : (typeof body === 'string' ? body : JSON.stringify(body) + '\n');
  res.writeHead(status, Object.assign({ 'content-type': 'application/json', 'cache-control': 'must-revalidate',
    'content-length': Buffer.byteLength(text) }, headers || {}));
  res.end(text);
}
function err(res, status, error, reason) { send(res, status, { error, reason }); }

function newDb() { return { seq: 0, docs: new Map(), local: new Map() }; }

// A document: its leaves (rev -> body with _revisions), every rev it has seen, its seq.
function docOf(db, id) {
  let d = db.docs.get(id);
  if (!d) { d = { leaves: new Map(), known: new Set(), seq: 0 }; db.docs.set(id, d); }
  return d;
}
function revPos(rev) { return parseInt(rev, 10); }
function winner(d) {
  let best = null;
  for (const [rev, body] of d.leaves) {
    if (!best || (!!best[1]._deleted > !!body._deleted) ||
        (!!best[1]._deleted === !!body._deleted && (revPos(rev) > revPos(best[0]) ||
         (revPos(rev) === revPos(best[0]) && rev > best[0])))) best = [rev, body];
  }
  return best;
}

// Store body (with _id, _rev and _revisions) as a leaf; the revisions it descends from stop
// being leaves.
function store(db, body) {
  const d = docOf(db, body._id);
  const hist = body._revisions;
  const ancestors = new Set();
  if (hist) hist.ids.forEach((h, i) => ancestors.add(`${hist.start - i}-${h}`));
  for (const rev of [...d.leaves.keys()]) if (ancestors.has(rev) && rev !== body._rev) d.leaves.delete(rev);
  for (const rev of ancestors) d.known.add(rev);
  d.known.add(body._rev);
  d.leaves.set(body._rev, body);
  d.seq = ++db.seq;
}

// A new edit: the next rev on top of the current winner (409 when _rev is not it).
function edit(db, doc) {
  const d = db.docs.get(doc._id);
  const cur = d && winner(d);
  if ((cur && !cur[1]._deleted ? cur[0] : undefined) !== (doc._rev || undefined)) return { error: 'conflict' };
  const pos = cur ? revPos(cur[0]) + 1 : 1;
  const hash = crypto.createHash('md5').update(JSON.stringify(doc)).digest('hex');
  const rev = `${pos}-${hash}`;
  const ids = [hash].concat(cur ? cur[1]._revisions.ids : []);
  const body = Object.assign({}, doc, { _rev: rev, _revisions: { start: pos, ids } });
  store(db, body);
  return { ok: true, id: doc._id, rev };
}

function withoutRevisions(body, revs) {
  const out = Object.assign({}, body);
  if (!revs) delete out._revisions;
  return out;
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

// One answer per revision asked, as CouchDB's open_revs: {ok: doc} or {missing: rev};
// the modes bend it.
function readRevs(db, id, revs, mode, wantRevs) {
  const d = db.docs.get(id);
  return revs.map((rev, i) => {
    const odd = id.charCodeAt(id.length - 1) % 2 === 1;
    if (mode.has('missing') && odd) return { missing: rev };
    if (mode.has('flat_errors') && odd) return { error: 'not_found', reason: 'missing' };
    const body = d && d.leaves.get(rev);
    if (!body) return { missing: rev };
    const doc = withoutRevisions(body, wantRevs);
    if (mode.has('bulk_get_other_id')) doc._id = id + '-other';
    if (mode.has('bulk_get_no_rev')) delete doc._rev;
    return { ok: doc };
  });
}

function changes(db, q, mode, res) {
  const since = q.since ? parseInt(q.since, 10) || 0 : 0;
  const limit = q.limit ? parseInt(q.limit, 10) : Infinity;
  const rows = [...db.docs.entries()].filter(([, d]) => d.seq > since && d.leaves.size > 0)
    .sort((a, b) => a[1].seq - b[1].seq).slice(0, limit)
    .map(([id, d]) => {
      const row = { seq: d.seq, id, changes: [...d.leaves.keys()].map((rev) => ({ rev })) };
      if (winner(d)[1]._deleted) row.deleted = true;
      if (mode.has('changes_no_changes')) delete row.changes;
      return row;
    });
  if (mode.has('changes_empty')) return send(res, 200, '');
  if (mode.has('changes_instant')) return send(res, 200, { results: [], last_seq: q.since || 0, pending: 0 });
  if (mode.has('changes_not_table')) return send(res, 200, '"not a changes answer"\n');
  const last = rows.length ? rows[rows.length - 1].seq : since;
  send(res, 200, { results: rows, last_seq: last, pending: 0 });
}

// The body that never ends: rows as fast as the client reads them, until it hangs up.
function endless(res) {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"total_rows":0,"offset":0,"rows":[');
  const row = Buffer.from(`{"id":"${'x'.repeat(200)}","key":"k","value":{"rev":"1-a"}},`.repeat(256));
  const more = () => { while (!res.destroyed && res.write(row)); };
  res.on('drain', more);
  more();
}

// A gzip bomb, streamed: one deflate block of 1 MiB of spaces, flushed so that it can be
// repeated byte for byte, sent 1024 times (1 GiB inflated from ~1 MB on the wire).
const BOMB_CHUNK = Buffer.alloc(1 << 20, 0x20);
let bombBlock;
function gzipBomb(res) {
  bombBlock = bombBlock || zlib.deflateRawSync(BOMB_CHUNK, { level: 9, finishFlush: zlib.constants.Z_FULL_FLUSH });
  res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
  res.write(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]));
  let sent = 0;
  const more = () => {
    while (!res.destroyed && sent < 1024) {
      sent++;
      if (!res.write(bombBlock)) return;
    }
    if (res.destroyed || sent < 1024) return;
    res.removeListener('drain', more);
    let crc = 0; // only computed for a client that read it all
    for (let i = 0; i < 1024; i++) crc = zlib.crc32(BOMB_CHUNK, crc);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE((1024 * (1 << 20)) >>> 0, 4);
    res.end(Buffer.concat([zlib.deflateRawSync(Buffer.alloc(0)), trailer]));
  };
  res.on('drain', more);
  more();
}

function handleDb(req, res, name, rest, q, text) {
  const mode = modes.get(name) || new Set();
  let db = dbs.get(name);
  if (throttles.get(name) > 0) {
    throttles.set(name, throttles.get(name) - 1);
    return send(res, 429, { error: 'too_many_requests', reason: 'You have exceeded your rate limit.' }, { 'retry-after': '1' });
  }
  if (mode.has('huge_header')) res.setHeader('x-junk', 'j'.repeat(1 << 20));
  if (req.method === 'GET' && mode.has('endless_body')) return endless(res);
  if (req.method === 'GET' && mode.has('gzip_bomb')) return gzipBomb(res);
  if (mode.has('unauthorized')) return err(res, 401, 'unauthorized', 'Name or password is incorrect.');
  if (mode.has('redirect')) {
    return send(res, 301, '', { location: `https://${req.headers.host}${req.url}`, 'content-type': 'text/html' });
  }
  if (mode.has('empty')) return send(res, req.method === 'PUT' || req.method === 'POST' ? 201 : 200, '');
  if (rest === '') {
    if (req.method === 'PUT') {
      if (db) return err(res, 412, 'file_exists', 'The database could not be created, the file already exists.');
      dbs.set(name, newDb());
      return send(res, 201, { ok: true });
    }
    if (!db) return err(res, 404, 'not_found', 'Database does not exist.');
    if (req.method === 'DELETE') { dbs.delete(name); return send(res, 200, { ok: true }); }
    return send(res, 200, { db_name: name, doc_count: db.docs.size, update_seq: db.seq, instance_start_time: '0' });
  }
  if (!db) return err(res, 404, 'not_found', 'Database does not exist.');
  const body = text ? JSON.parse(text) : {};
  if (rest === '_changes') return changes(db, Object.assign({}, q, body), mode, res);
  if (rest === '_revs_diff') {
    const out = {};
    for (const [id, revs] of Object.entries(body)) {
      const d = db.docs.get(id);
      const missing = revs.filter((r) => !d || !d.known.has(r));
      if (missing.length) out[id] = { missing };
    }
    return send(res, 200, out);
  }
  if (rest === '_bulk_get') {
    if (mode.has('no_bulk_get')) return err(res, 404, 'not_found', 'missing');
    if (mode.has('bulk_get_html')) return send(res, 200, '<html><body>Bad Gateway</body></html>', { 'content-type': 'text/html' });
    if (mode.has('bulk_get_empty')) return send(res, 200, '');
    let asked = body.docs || [];
    if (mode.has('bulk_get_short')) asked = asked.slice(0, Math.ceil(asked.length / 2));
    const results = asked.map((a) => ({ id: a.id, docs: readRevs(db, a.id, [a.rev], mode, q.revs === 'true') }));
    const out = JSON.stringify({ results });
    if (mode.has('bulk_get_truncated')) return send(res, 200, out.slice(0, out.length >> 1));
    return send(res, 200, out);
  }
  if (rest === '_bulk_docs') {
    if (mode.has('bulk_docs_object')) return send(res, 201, { ok: true });
    if (mode.has('bulk_docs_500')) return err(res, 500, 'internal_server_error', 'sustained failure');
    let docs = body.docs || [];
    if (mode.has('bulk_docs_short')) docs = docs.slice(0, docs.length >> 1);
    const out = docs.map((doc) => {
      if (body.new_edits === false) { store(db, doc); return { ok: true, id: doc._id, rev: doc._rev }; }
      return edit(db, doc);
    });
    return send(res, 201, out);
  }
  if (rest === '_all_docs') {
    const keys = body.keys || [...db.docs.keys()].sort();
    return send(res, 200, { total_rows: db.docs.size, offset: 0, rows: keys.map((k) => {
      const d = db.docs.get(k);
      const w = d && winner(d);
      if (!w) return { key: k, error: 'not_found' };
      return { id: k, key: k, value: w[1]._deleted ? { rev: w[0], deleted: true } : { rev: w[0] } };
    }) });
  }
  // a document (_local/ ones are kept apart, rev 0-n as CouchDB does)
  const id = decodeURIComponent(rest);
  if (id.startsWith('_local/')) {
    const cur = db.local.get(id);
    if (req.method === 'GET') return cur ? send(res, 200, cur) : err(res, 404, 'not_found', 'missing');
    if (req.method === 'PUT') {
      if ((cur && cur._rev) !== (body._rev || undefined)) return err(res, 409, 'conflict', 'Document update conflict.');
      const rev = `0-${cur ? parseInt(cur._rev.slice(2), 10) + 1 : 1}`;
      db.local.set(id, Object.assign({}, body, { _id: id, _rev: rev }));
      return send(res, 201, { ok: true, id, rev });
    }
  }
  if (req.method === 'PUT') {
    const r = edit(db, Object.assign({}, body, { _id: id }));
    return r.error ? err(res, 409, 'conflict', 'Document update conflict.') : send(res, 201, r);
  }
  if (req.method === 'GET') {
    const d = db.docs.get(id);
    if (q.open_revs) {
      if (!d) return err(res, 404, 'not_found', 'missing');
      const revs = q.open_revs === 'all' ? [...d.leaves.keys()] : JSON.parse(q.open_revs);
      if (mode.has('open_revs_empty')) return send(res, 200, []);
      return send(res, 200, readRevs(db, id, revs, mode, q.revs === 'true'));
    }
    const w = d && winner(d);
    if (!w || w[1]._deleted) return err(res, 404, 'not_found', 'missing');
    return send(res, 200, withoutRevisions(w[1], q.revs === 'true'));
  }
  return err(res, 405, 'method_not_allowed', 'Only GET,PUT allowed');
}

function control(req, res, parts, text) {
  if (req.method === 'POST' && parts[0] === 'reset') { reset(); return send(res, 200, { ok: true }); }
  if (req.method === 'GET' && parts[0] === 'log') return send(res, 200, { requests: log });
  if (req.method === 'PUT' && parts[0] === 'mode') {
    const m = JSON.parse(text || '{}').mode || '';
    const set = new Set(m.split(',').filter((x) => x && x !== 'normal'));
    const name = decodeURIComponent(parts[1]);
    throttles.delete(name);
    for (const x of set) if (x.startsWith('throttle:')) throttles.set(name, parseInt(x.slice(9), 10));
    modes.set(name, set);
    return send(res, 200, { ok: true });
  }
  if (req.method === 'GET' && parts[0] === 'db') {
    const db = dbs.get(decodeURIComponent(parts[1]));
    const docs = {};
    if (db) for (const [id, d] of db.docs) docs[id] = [...d.leaves.keys()];
    return send(res, 200, { exists: !!db, docs });
  }
  return err(res, 404, 'not_found', 'no such control endpoint');
}

const server = http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  const text = await readBody(req);
  const parts = u.pathname.split('/').slice(1);
  if (parts[0] === '_hostile') return control(req, res, parts.slice(1), text);
  const q = {};
  for (const [k, v] of u.searchParams) q[k] = v;
  try {
    if (u.pathname === '/') {
      log.push({ method: req.method, path: u.pathname, db: '_root' });
      const mode = modes.get('_root') || new Set();
      if (mode.has('redirect')) return send(res, 301, '', { location: `https://${req.headers.host}/` });
      if (mode.has('empty')) return send(res, 200, '');
      return send(res, 200, { couchdb: 'Welcome', version: '3.4.3', vendor: { name: 'hostile fake' } });
    }
    const name = decodeURIComponent(parts[0]);
    log.push({ method: req.method, path: u.pathname, db: name });
    return handleDb(req, res, name, parts.slice(1).join('/'), q, text);
  } catch (e) {
    return err(res, 500, 'internal_server_error', String(e && e.stack || e));
  }
});

server.keepAliveTimeout = 5000;
server.on('clientError', (e, socket) => { socket.destroy(); });
server.listen(0, '127.0.0.1', () => { process.stdout.write(`PORT ${server.address().port}\n`); });

function quit() { process.exit(0); }
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.on('error', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
