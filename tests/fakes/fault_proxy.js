#!/usr/bin/env node
// FAULT PROXY for the native engine's tests -- NOT a real server.
//
// Stands in front of a CouchDB-like upstream (tests/fakes/hostile.js in normal mode, or
// pouchdb-server) and bends its answers the ways the replication engine must survive,
// one set of faults per database. Kept apart from hostile.js (whose modes are the
// request layer's) so the two evolve independently.
//
// Start:  node fault_proxy.js <upstream base URL>
//   Listens on 127.0.0.1, port 0; prints "PORT <n>" on stdout; exits when stdin closes.
// Control (never forwarded):
//   PUT /_faults/<db>  {"faults": "<name>[,<name>...]"}   ("" clears)
//   GET /_faults/stats  {"bulk_get_bytes_max": n, "requests": n, ...}; DELETE starts them over
// Faults:
//   changes_no_seq       _changes rows lose their "seq"
//   changes_ignore_since _changes is asked upstream without "since" (from the start again)
//   stub_attachments     _bulk_get / open_revs without attachments=true: every attachment
//                        becomes a stub (as CouchDB answers attachments=false)
//   missing_stub         _bulk_docs holding an attachment stub: 412 missing_stub for the
//                        whole request (CouchDB's answer when the target lacks it)
//   drop                 the server is gone (restart, network loss): every request is
//                        answered by closing its connection, and setting it closes the
//                        ones in flight (a longpoll waiting upstream)
//   unavailable          every request is answered 503 service_unavailable (an overloaded
//                        or starting server)
//   slow_bulk_docs=MS    _bulk_docs answers held MS milliseconds (a slow target: bench/run
//                        slow); GET /_faults/stats then also says how many were in flight
//                        at most and on average while any was
//   slow_bulk_get=MS     _bulk_get answers held MS milliseconds (a slow source)
// With slow_bulk_docs, bulk_docs_busy_ms: how long any held _bulk_docs was in flight.
// Stats of every _bulk_get: bulk_get_in_flight_max, and bulk_get_while_writing: how many
// were answered while a held _bulk_docs was in flight (reads done during the slow writes)
'use strict';

const http = require('http');

const upstream = new URL(process.argv[2]);
const faults = new Map();
const inFlight = new Map(); // request -> its database, to drop the ones in flight
function freshStats() {
  return { bulk_get_bytes_max: 0, requests: 0, bulk_docs_in_flight_max: 0, bulk_docs_in_flight_avg: 0,
    bulk_get_in_flight_max: 0, bulk_get_while_writing: 0, bulk_docs_busy_ms: 0 };
}
let stats = freshStats();
let bulkDocsInFlight = 0, busySamples = 0, busySum = 0, bulkGetInFlight = 0, busySince = 0;
setInterval(() => { // the average over the time any _bulk_docs was in flight
  if (bulkDocsInFlight === 0) return;
  busySamples++; busySum += bulkDocsInFlight;
  stats.bulk_docs_in_flight_avg = busySum / busySamples;
}, 5).unref();

function slowMsOf(f, what) {
  for (const name of f) {
    const m = /^slow_(bulk_docs|bulk_get)=(\d+)$/.exec(name);
    if (m && m[1] === what) return +m[2];
  }
  return 0;
}

function send(res, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function forward(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const h = Object.assign({}, headers);
    delete h['content-length'];
    delete h['accept-encoding'];
    h.host = upstream.host;
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({ host: upstream.hostname, port: upstream.port, method, path, headers: h }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

function stubbed(doc) {
  if (!doc || !doc._attachments) return doc;
  for (const [name, a] of Object.entries(doc._attachments)) {
    if (a.stub) continue;
    const length = a.length !== undefined ? a.length : (a.data ? Buffer.from(a.data, 'base64').length : 0);
    doc._attachments[name] = { content_type: a.content_type, revpos: a.revpos || 1, digest: a.digest || 'md5-x', length, stub: true };
  }
  return doc;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let body = chunks.length ? Buffer.concat(chunks).toString('utf8') : undefined;
    const u = new URL(req.url, 'http://x');
    const parts = u.pathname.split('/').slice(1);
    if (parts[0] === '_faults') {
      if (req.method === 'GET' && parts[1] === 'stats') return send(res, 200, stats);
      if (req.method === 'DELETE' && parts[1] === 'stats') {
        stats = freshStats();
        busySamples = 0; busySum = 0;
        return send(res, 200, { ok: true });
      }
      const f = JSON.parse(body || '{}').faults || '';
      const name = decodeURIComponent(parts[1]);
      faults.set(name, new Set(f.split(',').filter(Boolean)));
      if (faults.get(name).has('drop')) {
        for (const [r, d] of inFlight) if (d === name) r.socket.destroy();
      }
      return send(res, 200, { ok: true });
    }
    stats.requests++;
    const db = decodeURIComponent(parts[0] || '');
    const rest = parts.slice(1).join('/');
    const f = faults.get(db) || new Set();
    if (f.has('drop')) return req.socket.destroy();
    if (f.has('unavailable')) return send(res, 503, { error: 'service_unavailable', reason: 'the fault proxy says so' });
    inFlight.set(req, db);
    res.on('close', () => inFlight.delete(req));
    try {
      if (rest === '_changes' && f.has('changes_ignore_since')) u.searchParams.delete('since');
      const noAtt = u.searchParams.get('attachments') !== 'true';
      if (rest === '_bulk_docs' && f.has('missing_stub') && body && /"stub"\s*:\s*true/.test(body)) {
        return send(res, 412, { error: 'missing_stub', reason: 'Invalid attachment stub in doc' });
      }
      const slowMs = rest === '_bulk_docs' ? slowMsOf(f, 'bulk_docs') : 0;
      const isBulkGet = rest === '_bulk_get';
      if (slowMs && bulkDocsInFlight === 0) busySince = Date.now();
      if (slowMs) stats.bulk_docs_in_flight_max = Math.max(stats.bulk_docs_in_flight_max, ++bulkDocsInFlight);
      if (isBulkGet) {
        stats.bulk_get_in_flight_max = Math.max(stats.bulk_get_in_flight_max, ++bulkGetInFlight);
      }
      const holdMs = slowMs || (isBulkGet ? slowMsOf(f, 'bulk_get') : 0);
      let up;
      try {
        up = await forward(req.method, u.pathname + u.search, req.headers, body);
        if (holdMs) await new Promise((r) => setTimeout(r, holdMs));
      } finally {
        if (slowMs && --bulkDocsInFlight === 0) stats.bulk_docs_busy_ms += Date.now() - busySince;
        if (isBulkGet) bulkGetInFlight--;
      }
      if (isBulkGet && bulkDocsInFlight > 0) stats.bulk_get_while_writing++;
      let text = up.body;
      if (up.status < 300 && rest === '_changes' && f.has('changes_no_seq')) {
        const j = JSON.parse(text);
        for (const r of j.results || []) delete r.seq;
        text = JSON.stringify(j);
      }
      if (up.status < 300 && f.has('stub_attachments') && noAtt && (rest === '_bulk_get' || u.searchParams.has('open_revs'))) {
        const j = JSON.parse(text);
        const entries = rest === '_bulk_get' ? j.results.flatMap((r) => r.docs) : j;
        for (const e of entries) if (e.ok) stubbed(e.ok);
        text = JSON.stringify(j);
      }
      if (rest === '_bulk_get') stats.bulk_get_bytes_max = Math.max(stats.bulk_get_bytes_max, Buffer.byteLength(text));
      res.writeHead(up.status, { 'content-type': up.headers['content-type'] || 'application/json',
        'content-length': Buffer.byteLength(text) });
      res.end(text);
    } catch (e) {
      send(res, 502, { error: 'proxy_error', reason: String(e && e.stack || e) });
    }
  });
});

server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => { process.stdout.write(`PORT ${server.address().port}\n`); });
function quit() { process.exit(0); }
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.on('error', quit);
process.stdin.resume();
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
