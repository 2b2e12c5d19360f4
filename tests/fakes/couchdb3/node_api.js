'use strict';
// /_node/{node}/_config: the configuration (only [replicator] keys change behaviour).
const { opts } = require('./state');
const { CLUSTER, LOCAL, NODES } = require('./cluster');
const { parseJSON } = require('./json');
const { badRequest, methodNotAllowed, notFound } = require('./errors');
const { restartTick, sched } = require('./scheduler');
const { send } = require('./http');

const config = new Map(); // "section/key" -> string
if (opts.maxJobs !== null) config.set('replicator/max_jobs', String(opts.maxJobs));
if (CLUSTER) { config.set('cluster/n', String(Math.min(3, NODES.length))); config.set('cluster/q', '2'); }

function configChanged(section, key, value, deleted) {
  if (section !== 'replicator') return;
  // CouchDB 3.4.3: DELETE of replicator/max_jobs crashes the scheduler's config listener
  // (badarg list_to_integer(deleted)); the old value stays in effect (see fixture 086).
  if (deleted) return;
  const n = parseInt(value, 10);
  if (key === 'max_jobs' && n >= 0) sched.maxJobs = n;
  else if (key === 'interval' && n > 0) { sched.interval = n; restartTick(); }
  else if (key === 'max_churn' && n >= 0) sched.maxChurn = n;
}
function handleNode(req, res, segs, bodyText) {
  const node = segs[1];
  if (node !== '_local' && !NODES.includes(node)) throw notFound(`Node ${node} does not exist`);
  if (segs[2] !== '_config') {
    if (segs.length === 2) return send(req, res, 200, { name: node === '_local' ? LOCAL : node });
    throw notFound('missing');
  }
  const section = segs[3];
  const key = segs.slice(4).join('/');
  if (!section) {
    if (req.method !== 'GET') throw methodNotAllowed('GET');
    const out = {};
    for (const [k, v] of config) {
      const [s, kk] = k.split(/\/(.*)/s);
      (out[s] = out[s] || {})[kk] = v;
    }
    return send(req, res, 200, out);
  }
  if (!key) {
    if (req.method !== 'GET') throw methodNotAllowed('GET');
    const out = {};
    for (const [k, v] of config) if (k.startsWith(`${section}/`)) out[k.slice(section.length + 1)] = v;
    return send(req, res, 200, out);
  }
  const k = `${section}/${key}`;
  if (req.method === 'GET') {
    if (!config.has(k)) throw notFound('unknown_config_value');
    return send(req, res, 200, config.get(k));
  }
  if (req.method === 'PUT') {
    let v;
    try { v = parseJSON(bodyText); } catch (_) { throw badRequest('invalid UTF-8 JSON'); }
    if (typeof v !== 'string') throw badRequest('values must be strings');
    const old = config.has(k) ? config.get(k) : '';
    config.set(k, v);
    configChanged(section, key, v, false);
    return send(req, res, 200, old);
  }
  if (req.method === 'DELETE') {
    if (!config.has(k)) throw notFound('unknown_config_value');
    const old = config.get(k);
    config.delete(k);
    configChanged(section, key, null, true);
    return send(req, res, 200, old);
  }
  throw methodNotAllowed('GET,PUT,DELETE');
}

module.exports = { config, configChanged, handleNode };
