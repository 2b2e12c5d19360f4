// A pass-through HTTP proxy in front of pouchdb-server for IBM's couchbackup/couchrestore,
// adding the two fields CouchDB sends and pouchdb-server does not, without which they
// cannot run against it:
//   _changes: "pending" (couchbackup's ChangesFollower stops only at pending == 0): 0 when
//             the page is empty or shorter than its limit, else 1 (so it asks once more);
//   GET /db:  "doc_del_count" (couchrestore refuses a target without it), 0 when absent;
// and it inflates gzip-encoded request bodies (the Cloudant SDK compresses them; pouchdb-server
// cannot read them), and answers a _bulk_get of no documents itself (couchbackup's probe
// for _bulk_get; pouchdb-server never answers it).
// usage: node shim.js http://host:port   prints "PORT <n>"; exits when stdin closes.
'use strict';
const http = require('http');
const zlib = require('zlib');
const target = new URL(process.argv[2]);
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body = Buffer.concat(chunks);
    const headers = { ...req.headers, host: target.host };
    if (/gzip/.test(headers['content-encoding'] || '')) {
      body = zlib.gunzipSync(body);
      delete headers['content-encoding'];
      headers['content-length'] = body.length;
    }
    if (req.method === 'POST' && /\/_bulk_get$/.test(new URL(req.url, 'http://x').pathname)) {
      let empty = false;
      try { const b = JSON.parse(body.toString('utf8')); empty = Array.isArray(b.docs) && b.docs.length === 0; } catch (e) { /* not JSON */ }
      if (empty) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"results":[]}');
        return;
      }
    }
    const up = http.request({ hostname: target.hostname, port: target.port, method: req.method,
                              path: req.url, headers }, (ures) => {
      const out = [];
      ures.on('data', (c) => out.push(c));
      ures.on('end', () => {
        let data = Buffer.concat(out);
        const url = new URL(req.url, 'http://x');
        const segs = url.pathname.split('/').filter(Boolean);
        const isJson = /json/.test(ures.headers['content-type'] || '');
        if (isJson && ures.statusCode === 200) {
          try {
            const v = JSON.parse(data.toString('utf8'));
            let changed = false;
            if (segs.length === 2 && segs[1] === '_changes' && v.results && v.pending === undefined) {
              let limit = Number(url.searchParams.get('limit'));
              if (!limit && body.length) { try { limit = Number(JSON.parse(body).limit); } catch (e) { /* no body */ } }
              v.pending = (v.results.length === 0 || !limit || v.results.length < limit) ? 0 : 1;
              changed = true;
            } else if (segs.length === 1 && !segs[0].startsWith('_') && req.method === 'GET' &&
                       v.db_name !== undefined && v.doc_del_count === undefined) {
              v.doc_del_count = 0;
              changed = true;
            }
            if (changed) data = Buffer.from(JSON.stringify(v));
          } catch (e) { /* not JSON after all: pass it on */ }
        }
        const h = { ...ures.headers };
        delete h['content-length'];
        delete h['transfer-encoding'];
        h['content-length'] = data.length;
        res.writeHead(ures.statusCode, h);
        res.end(data);
      });
    });
    up.on('error', (e) => { res.writeHead(502); res.end(JSON.stringify({ error: 'proxy', reason: e.message })); });
    up.end(body);
  });
});
server.listen(0, '127.0.0.1', () => { console.log('PORT ' + server.address().port); });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
