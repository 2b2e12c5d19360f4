'use strict';
// The request router: public endpoints, /_session, /_uuids, /_all_dbs, then the rest.
const crypto = require('crypto');
const { ADMIN, SERVER_UUID, opts } = require('./state');
const { NODES } = require('./cluster');
const { isObj } = require('./json');
const { HttpError, badRequest, methodNotAllowed } = require('./errors');
const { SYSTEM_DBS, dbInfo, dbs } = require('./store');
const { activeTask, jobs } = require('./scheduler');
const { etagOf, authenticate, boolParam, intParam, jsonBody, notAdmin, readBody, send, sessions } = require('./http');
const { handleDb } = require('./db_api');
const { handleReplicate, handleScheduler } = require('./replication_api');
const { handleNode } = require('./node_api');
const { handleFake } = require('./control');

async function handle(req, res) {
  const [rawPath, rawQuery = ''] = req.url.split(/\?(.*)/s);
  const q = new URLSearchParams(rawQuery);
  let segs;
  try {
    segs = rawPath.split('/').slice(1).map(decodeURIComponent);
  } catch (_) {
    throw badRequest('Invalid URL encoding');
  }
  if (segs.length && segs[segs.length - 1] === '' && segs.length > 1) segs.pop();
  req.rawBody = await readBody(req); // attachments are bytes; everything else is JSON text
  const bodyText = req.rawBody.toString('utf8');
  if (opts.verbose) process.stderr.write(`fake_couchdb3: ${req.method} ${req.url}\n`);
  const ctx = authenticate(req);
  const m = req.method;
  const s0 = segs[0] || '';

  // ---- public
  if (s0 === '' && segs.length <= 1) {
    if (m !== 'GET' && m !== 'HEAD') throw methodNotAllowed('GET,HEAD');
    return send(req, res, 200, {
      couchdb: 'Welcome', version: '3.4.3', git_sha: 'e12b967', uuid: SERVER_UUID,
      features: ['quickjs', 'access-ready', 'partitioned', 'pluggable-storage-engines', 'reshard', 'scheduler'],
      vendor: { name: 'The Apache Software Foundation' },
    });
  }
  if (s0 === '_up') return send(req, res, 200, { status: 'ok', seeds: {} });
  if (s0 === '_session') return handleSession(req, res, ctx, bodyText);
  if (s0 === '_uuids') {
    const n = Math.min(1000, intParam(q, 'count', 1));
    // recorded: Cache-Control no-cache (the only answer without must-revalidate) and an ETag
    const uuids = Array.from({ length: n }, () => crypto.randomBytes(16).toString('hex'));
    return send(req, res, 200, { uuids }, { 'Cache-Control': 'no-cache', ETag: etagOf(uuids.join()) });
  }

  // ---- everything else is for the admin
  if (!ctx.admin) {
    if (s0.startsWith('_') && !SYSTEM_DBS.has(s0)) throw notAdmin();
    throw new HttpError(401, 'unauthorized', 'You are not authorized to access this db.');
  }
  switch (s0) {
    case '_all_dbs': {
      let names = [...dbs.keys()].sort();
      if (boolParam(q, 'descending')) names.reverse();
      const skip = intParam(q, 'skip', 0);
      const limit = intParam(q, 'limit', names.length);
      names = names.slice(skip, skip + limit);
      return send(req, res, 200, names, { ETag: etagOf(names.join('/')) });
    }
    case '_dbs_info': {
      if (m !== 'POST') throw methodNotAllowed('POST');
      const body = jsonBody(bodyText);
      if (!isObj(body) || !Array.isArray(body.keys)) throw badRequest('`keys` member must exist.');
      return send(req, res, 200, body.keys.map((k) => (dbs.has(k) ? { key: k, info: dbInfo(dbs.get(k)) } : { key: k, error: 'not_found' })));
    }
    case '_membership':
      return send(req, res, 200, { all_nodes: NODES, cluster_nodes: NODES });
    case '_active_tasks': {
      if (m !== 'GET' && m !== 'HEAD') throw methodNotAllowed('GET,HEAD');
      const tasks = [...jobs.values()].filter((j) => j.state === 'running' && j.taskReady).sort((a, b) => (a.id < b.id ? -1 : 1)).map(activeTask);
      return send(req, res, 200, tasks);
    }
    case '_scheduler':
      return handleScheduler(req, res, segs, q);
    case '_replicate':
      return handleReplicate(req, res, ctx, bodyText);
    case '_node':
      return handleNode(req, res, segs, bodyText);
    case '_fake':
      return handleFake(req, res, segs, bodyText);
    default:
      return handleDb(req, res, segs, q, ctx, bodyText);
  }
}
function handleSession(req, res, ctx, bodyText) {
  const info = { authentication_handlers: ['cookie', 'default'] };
  if (req.method === 'GET' || req.method === 'HEAD') {
    if (ctx.how) info.authenticated = ctx.how;
    return send(req, res, 200, { ok: true, userCtx: { name: ctx.name, roles: ctx.roles }, info });
  }
  if (req.method === 'POST') {
    let name;
    let password;
    const ct = String(req.headers['content-type'] || '');
    if (/application\/x-www-form-urlencoded/i.test(ct)) {
      const f = new URLSearchParams(bodyText);
      name = f.get('name');
      password = f.get('password');
    } else {
      const b = jsonBody(bodyText);
      if (isObj(b)) { name = b.name; password = b.password; }
    }
    if (name !== ADMIN || password !== opts.password) throw new HttpError(401, 'unauthorized', 'Name or password is incorrect.');
    const token = Buffer.from(`${ADMIN}:${Date.now().toString(16).toUpperCase()}:${crypto.randomBytes(12).toString('hex')}`).toString('base64url');
    sessions.set(token, ADMIN);
    return send(req, res, 200, { ok: true, name: ADMIN, roles: ['_admin'] }, { 'Set-Cookie': `AuthSession=${token}; Version=1; Path=/; HttpOnly` });
  }
  if (req.method === 'DELETE') {
    const m = /(?:^|;\s*)AuthSession=([^;]*)/.exec(req.headers.cookie || '');
    if (m) sessions.delete(m[1]);
    return send(req, res, 200, { ok: true }, { 'Set-Cookie': 'AuthSession=; Version=1; Path=/; HttpOnly' });
  }
  throw methodNotAllowed('GET,HEAD,POST,DELETE');
}

module.exports = { handle, handleSession };
