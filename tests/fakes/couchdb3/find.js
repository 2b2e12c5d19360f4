'use strict';
// POST /db/_find with no index but _all_docs, as CouchDB 3.4.3 answers it then:
// {docs, bookmark, warning} (recorded: fixtures/couchdb-3.4.3-suite 00093), documents in
// _id order, design documents never returned, limit 25 by default, fields projected in
// the order asked. A sort on anything but _id needs an index: 400 no_usable_index.
// The error bodies here (missing selector, wrong types) follow mango's sources; they are
// not in the recordings.
const { isObj, has } = require('./json');
const { HttpError, methodNotAllowed } = require('./errors');
const { mangoMatch, fieldValue } = require('./mango');
const { docJSON } = require('./store');
const { jsonBody, send } = require('./http');

const WARNING = 'No matching index found, create an index to optimize query time.';
const invalid = (what) => new HttpError(400, 'invalid_argument', what);

// bookmarks: opaque to clients; here the last _id returned, in CouchDB's "g1AAAA" dress
const bookmarkOf = (id) => `g1AAAA${Buffer.from(JSON.stringify([id])).toString('base64url')}`;
function afterBookmark(b) {
  if (b === undefined || b === null || b === 'nil') return null;
  try {
    return JSON.parse(Buffer.from(String(b).replace(/^g1AAAA/, ''), 'base64url').toString('utf8'))[0];
  } catch (_) {
    throw new HttpError(400, 'invalid_bookmark', `Invalid bookmark value: ${JSON.stringify(b)}`);
  }
}

// {"a.b": ...} of a document: only the fields asked for, nested as in the document
function project(doc, fields) {
  const out = Object.create(null);
  for (const f of fields) {
    const v = fieldValue(doc, f);
    if (v === undefined) continue;
    const parts = f.split('.');
    let o = out;
    for (const p of parts.slice(0, -1)) o = (o[p] = isObj(o[p]) ? o[p] : Object.create(null));
    o[parts[parts.length - 1]] = v;
  }
  return out;
}

// descending when the (only) sort field asks for it; anything but _id needs an index
function sortDescending(sort) {
  if (sort === undefined) return false;
  if (!Array.isArray(sort)) throw invalid('sort must be an array');
  let desc = false;
  for (const s of sort) {
    const field = typeof s === 'string' ? s : isObj(s) && Object.keys(s).length === 1 ? Object.keys(s)[0] : null;
    if (field === null) throw invalid('Invalid sort field');
    if (field !== '_id') throw new HttpError(400, 'no_usable_index', 'No index exists for this sort, try indexing by the sort fields.');
    if (isObj(s) && s[field] === 'desc') desc = true;
  }
  return desc;
}

function handleFind(req, res, db, bodyText) {
  if (req.method !== 'POST') throw methodNotAllowed('POST');
  const b = jsonBody(bodyText);
  if (!isObj(b)) throw new HttpError(400, 'bad_request', 'Request body must be a JSON object');
  if (!has(b, 'selector')) throw new HttpError(400, 'missing_required_key', 'Missing required key: selector');
  if (!isObj(b.selector)) throw invalid('selector must be a JSON object');
  if (has(b, 'fields') && !(Array.isArray(b.fields) && b.fields.every((f) => typeof f === 'string'))) {
    throw invalid('fields must be an array of strings');
  }
  const desc = sortDescending(b.sort);
  const limit = has(b, 'limit') ? Number(b.limit) : 25;
  const skip = has(b, 'skip') ? Number(b.skip) : 0;
  const after = afterBookmark(b.bookmark);
  let list = [...db.docs.values()].filter((d) => !d.winner.deleted && !d.id.startsWith('_design/'))
    .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  if (desc) list.reverse();
  if (after !== null) list = list.filter((d) => (desc ? d.id < after : d.id > after));
  const matched = [];
  for (const d of list) {
    const json = docJSON(d, d.winner, { conflicts: b.conflicts === true });
    if (mangoMatch(json, b.selector)) matched.push(json);
  }
  const page = matched.slice(skip, skip + limit);
  const docs = has(b, 'fields') && b.fields.length ? page.map((d) => project(d, b.fields)) : page;
  const bookmark = page.length ? bookmarkOf(page[page.length - 1]._id) : 'nil';
  return send(req, res, 200, { docs, bookmark, warning: WARNING });
}

module.exports = { handleFind };
