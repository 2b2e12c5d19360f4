'use strict';
// Design document functions: filters and validate_doc_update, run in node's vm.
const vm = require('vm');
const { enc, isObj } = require('./json');
const { HttpError } = require('./errors');
const { revStr } = require('./revs');

// A filter function "ddoc/name" of a db: a callable, or an error string.
function loadFilter(db, name) {
  const m = /^([^/]+)\/(.+)$/.exec(name);
  if (!m) return `Invalid filter name \`${name}\``;
  const ddoc = db.docs.get(`_design/${m[1]}`);
  if (!ddoc || ddoc.winner.deleted) return `_design/${m[1]}`;
  const src = isObj(ddoc.winner.body.filters) ? ddoc.winner.body.filters[m[2]] : undefined;
  if (typeof src !== 'string') return `filter \`${m[2]}\` in _design/${m[1]}`;
  let script;
  try {
    script = new vm.Script(`(${src})(__doc, __req)`);
  } catch (e) {
    return `compilation of filter \`${m[2]}\` failed: ${e.message}`;
  }
  const ctx = vm.createContext({ __doc: null, __req: null, log: () => {} });
  return (doc, req) => {
    ctx.__doc = JSON.parse(enc(doc));
    ctx.__req = JSON.parse(enc(req));
    try { return script.runInContext(ctx, { timeout: 1000 }) === true; } catch (_) { return false; }
  };
}

// validate_doc_update functions of a db's design docs (run for every non-design write,
// replicated ones included, as CouchDB does)
const vduCache = new Map(); // "db\0ddoc id\0rev" -> vm.Script | null
function runVdus(db, newDoc, oldDoc, ctx) {
  if (newDoc._id.startsWith('_design/')) return;
  for (const ddocId of db.ddocs) {
    const d = db.docs.get(ddocId);
    if (!d || d.winner.deleted) continue;
    const src = d.winner.body.validate_doc_update;
    if (typeof src !== 'string') continue;
    const key = `${db.name}\0${d.id}\0${revStr(d.winner)}`;
    if (!vduCache.has(key)) {
      let script = null;
      try { script = new vm.Script(`(${src})(__new, __old, __ctx, __sec)`); } catch (_) { script = null; }
      vduCache.set(key, script);
    }
    const script = vduCache.get(key);
    if (!script) continue;
    const sandbox = vm.createContext({
      __new: JSON.parse(enc(newDoc)), __old: oldDoc ? JSON.parse(enc(oldDoc)) : null,
      __ctx: { db: db.name, name: ctx ? ctx.name : null, roles: ctx ? ctx.roles || [] : [] },
      __sec: JSON.parse(enc(db.security || {})), log: () => {},
    });
    try {
      script.runInContext(sandbox, { timeout: 1000 });
    } catch (e) {
      if (e && typeof e === 'object' && e.forbidden !== undefined) throw new HttpError(403, 'forbidden', String(e.forbidden));
      if (e && typeof e === 'object' && e.unauthorized !== undefined) throw new HttpError(401, 'unauthorized', String(e.unauthorized));
      throw new HttpError(500, 'error', String(e && e.message ? e.message : e));
    }
  }
}

module.exports = { loadFilter, runVdus, vduCache };
