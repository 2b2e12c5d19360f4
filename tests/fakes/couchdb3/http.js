'use strict';
// HTTP plumbing: answers with CouchDB's headers, bodies, query parameters, authentication.
const { ADMIN, opts } = require('./state');
const { enc, md5, parseJSON } = require('./json');
const { httpDate } = require('./clock');
const { HttpError, badRequest } = require('./errors');

const sessions = new Map(); // AuthSession cookie -> user name
let requestCounter = 0;

function baseHeaders(extra) {
  return {
    'Content-Type': 'application/json',
    'Cache-Control': 'must-revalidate',
    Server: 'CouchDB/3.4.3 (Erlang OTP/25)',
    Date: httpDate(),
    'X-Couch-Request-ID': (++requestCounter).toString(16).padStart(10, '0'),
    'X-CouchDB-Body-Time': '0',
    ...(extra || {}),
  };
}

function send(req, res, status, body, extra) {
  if (res.writableEnded || res.destroyed) return;
  const text = body === undefined ? '' : `${enc(body)}\n`;
  const headers = baseHeaders(extra);
  headers['Content-Length'] = Buffer.byteLength(text);
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : text);
}

// raw bytes (an attachment) instead of JSON
function sendBytes(req, res, status, buf, extra) {
  if (res.writableEnded || res.destroyed) return;
  const headers = baseHeaders(extra);
  headers['Content-Length'] = buf.length;
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : buf);
}

// CouchDB's ETags of computed answers: 25 base-36 characters of an md5
const etagOf = (text) => `"${BigInt(`0x${md5(String(text)).slice(0, 26)}`).toString(36).toUpperCase().padStart(25, '0').slice(0, 25)}"`;

function sendError(req, res, e) {
  send(req, res, e.status, { error: e.error, reason: e.reason }, e.headers);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function jsonBody(text, { optional = false } = {}) {
  if (!text.trim()) {
    if (optional) return undefined;
    throw badRequest('Request body must be a JSON object');
  }
  try {
    return parseJSON(text);
  } catch (_) {
    throw badRequest('invalid UTF-8 JSON');
  }
}

function jsonParam(q, name) {
  const v = q.get(name);
  try { return parseJSON(v); } catch (_) { throw new HttpError(400, 'bad_request', `Invalid JSON for query parameter ${name}`); }
}

function boolParam(q, name, dflt = false) {
  if (!q.has(name)) return dflt;
  const v = q.get(name);
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new HttpError(400, 'query_parse_error', `Invalid boolean parameter: "${v}"`);
}

function intParam(q, name, dflt) {
  if (!q.has(name)) return dflt;
  const v = q.get(name);
  if (!/^\d+$/.test(v)) throw new HttpError(400, 'query_parse_error', `Invalid value for positive integer: "${v}"`);
  return parseInt(v, 10);
}

function authenticate(req) {
  const h = req.headers.authorization;
  if (h && /^basic /i.test(h)) {
    const dec = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
    const c = dec.indexOf(':');
    const user = c >= 0 ? dec.slice(0, c) : dec;
    const pass = c >= 0 ? dec.slice(c + 1) : '';
    if (user === ADMIN && pass === opts.password) return { name: ADMIN, roles: ['_admin'], admin: true, how: 'default' };
    throw new HttpError(401, 'unauthorized', 'Name or password is incorrect.');
  }
  const cookie = req.headers.cookie || '';
  const m = /(?:^|;\s*)AuthSession=([^;]*)/.exec(cookie);
  if (m && sessions.has(m[1])) return { name: sessions.get(m[1]), roles: ['_admin'], admin: true, how: 'cookie' };
  return { name: null, roles: [], admin: false, how: null };
}

const notAdmin = () => new HttpError(401, 'unauthorized', 'You are not a server admin.');
function paging(q) {
  const limit = q.has('limit') ? intParam(q, 'limit', 0) : Infinity;
  const skip = intParam(q, 'skip', 0);
  return { limit, skip };
}

module.exports = { etagOf, authenticate, baseHeaders, boolParam, intParam, jsonBody, jsonParam, notAdmin, paging, readBody, send, sendBytes, sendError, sessions };
