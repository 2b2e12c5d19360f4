'use strict';
// Replication parameters: endpoints, options, the replication id.
const { SERVER_UUID, state } = require('./state');
const { enc, has, isInt, isObj, md5 } = require('./json');

class RepError extends Error {
  constructor(docReason, status, error, reason) {
    super(docReason);
    this.docReason = docReason; // the 403 reason for a _replicator doc
    this.status = status; // the /_replicate answer
    this.error = error;
    this.reason = reason;
  }
}

const badRepParam = (msg) => new RepError(`{throw,{bad_request,<<"${msg}">>}}`, 400, 'bad_request', msg);

function parseEndpoint(v) {
  if (v === undefined || v === null) throw new RepError('Missing replicator database', 400, 'bad_request', 'Missing replicator database');
  let url;
  let user = null;
  let pass = null;
  if (typeof v === 'string') url = v;
  else if (isObj(v)) {
    if (typeof v.url !== 'string') throw new RepError('{error,function_clause}', 500, 'unknown_error', 'function_clause');
    url = v.url;
    const basic = isObj(v.auth) && isObj(v.auth.basic) ? v.auth.basic : null;
    if (basic) { user = basic.username; pass = basic.password; }
    const hdrs = isObj(v.headers) ? v.headers : null;
    const authz = hdrs && Object.keys(hdrs).find((k) => k.toLowerCase() === 'authorization');
    if (!basic && authz && typeof hdrs[authz] === 'string' && /^basic /i.test(hdrs[authz])) {
      const dec = Buffer.from(hdrs[authz].slice(6).trim(), 'base64').toString('utf8');
      const c = dec.indexOf(':');
      if (c >= 0) { user = dec.slice(0, c); pass = dec.slice(c + 1); }
    }
  } else {
    throw new RepError('{error,function_clause}', 500, 'unknown_error', 'function_clause');
  }
  const m = /^(https?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)([^?#]*)/i.exec(url);
  if (!m) throw new RepError('local_endpoints_not_supported', 400, 'bad_request', 'local_endpoints_not_supported');
  if (m[2] !== undefined && user === null) {
    const c = m[2].indexOf(':');
    const dec = (s) => { try { return decodeURIComponent(s); } catch (_) { return s; } };
    user = dec(c >= 0 ? m[2].slice(0, c) : m[2]);
    pass = c >= 0 ? dec(m[2].slice(c + 1)) : '';
  }
  const hostport = m[3];
  let path = m[4] || '/';
  const bare = `${m[1].toLowerCase()}${hostport}${path}`;
  const stripped = bare.endsWith('/') ? bare : `${bare}/`;
  const hp = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(hostport) || [];
  const host = (hp[1] || '').toLowerCase();
  const port = hp[2] ? parseInt(hp[2], 10) : m[1].toLowerCase() === 'https://' ? 443 : 80;
  const isLocal = m[1].toLowerCase() === 'http://' && ['127.0.0.1', 'localhost', '[::1]'].includes(host) && port === state.port;
  let dbName = null;
  if (isLocal) {
    path = path.replace(/^\/+|\/+$/g, '');
    try { dbName = decodeURIComponent(path); } catch (_) { dbName = path; }
  }
  return { url: stripped, host: host.replace(/^\[|\]$/g, ''), port, user, pass, local: isLocal, dbName };
}

const BOOL_OPTS = ['continuous', 'create_target', 'cancel', 'use_checkpoints', 'winning_revs_only', 'use_bulk_get'];
const INT_OPTS = ['worker_processes', 'worker_batch_size', 'http_connections', 'connection_timeout', 'retries_per_request', 'checkpoint_interval'];

function parseRep(body, { transient }) {
  if (!isObj(body)) throw new RepError('{error,function_clause}', 400, 'bad_request', 'Request body must be a JSON object');
  const source = parseEndpoint(body.source);
  const target = parseEndpoint(body.target);
  for (const k of BOOL_OPTS) {
    if (has(body, k) && typeof body[k] !== 'boolean') throw badRepParam(`parameter \`${k}\` must be a boolean`);
  }
  for (const k of INT_OPTS) {
    if (!has(body, k)) continue;
    const v = body[k];
    const ok = isInt(v) || (typeof v === 'string' && /^-?\d+$/.test(v));
    if (!ok) throw new RepError('{error,badarg}', 400, 'bad_request', `parameter \`${k}\` must be an integer`);
  }
  if (has(body, 'doc_ids') && !Array.isArray(body.doc_ids)) throw badRepParam('parameter `doc_ids` must be an array');
  if (has(body, 'selector') && !isObj(body.selector)) throw badRepParam('parameter `selector` must be a JSON object');
  if (has(body, 'filter') && typeof body.filter !== 'string') throw badRepParam('parameter `filter` must be a string');
  if (has(body, 'query_params') && !isObj(body.query_params)) throw badRepParam('parameter `query_params` must be an object');
  const kinds = ['doc_ids', 'filter', 'selector'].filter((k) => has(body, k) && !(k === 'filter' && (body.filter === '_doc_ids' || body.filter === '_selector')));
  if (kinds.length > 1) throw badRepParam('`doc_ids`, `filter`, `selector` are mutually exclusive');
  const rep = {
    source,
    target,
    continuous: body.continuous === true,
    createTarget: body.create_target === true,
    docIds: Array.isArray(body.doc_ids) ? body.doc_ids.filter((x) => typeof x === 'string') : null,
    selector: isObj(body.selector) ? body.selector : null,
    filter: typeof body.filter === 'string' && !['_doc_ids', '_selector'].includes(body.filter) ? body.filter : null,
    queryParams: isObj(body.query_params) ? body.query_params : {},
    sinceSeq: has(body, 'since_seq') ? body.since_seq : undefined,
    useCheckpoints: body.use_checkpoints !== false,
    transient,
  };
  rep.baseId = md5(enc([SERVER_UUID, source.url, target.url, rep.filter, rep.queryParams, rep.docIds, rep.selector, rep.sinceSeq === undefined ? null : rep.sinceSeq]));
  rep.jobId = rep.baseId + (rep.continuous ? '+continuous' : '') + (rep.createTarget ? '+create_target' : '');
  return rep;
}

module.exports = { BOOL_OPTS, INT_OPTS, RepError, badRepParam, parseEndpoint, parseRep };
