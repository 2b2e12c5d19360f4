'use strict';
// Lossless JSON (numbers keep their text) and small value helpers.
const crypto = require('crypto');

class RawNum {
  constructor(text) { this.text = text; }
  valueOf() { return Number(this.text); }
  toString() { return this.text; }
}

function parseJSON(text) {
  let i = 0;
  const n = text.length;
  const numRe = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const fail = () => { throw new SyntaxError(`invalid JSON at offset ${i}`); };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const str = () => {
    const start = i;
    let esc = false;
    i++;
    for (;;) {
      if (i >= n) fail();
      const c = text.charCodeAt(i);
      if (c === 34) break;
      if (c === 92) { esc = true; i += 2; continue; }
      if (c < 32) fail();
      i++;
    }
    i++;
    const raw = text.slice(start, i);
    return esc ? JSON.parse(raw) : raw.slice(1, -1);
  };
  const val = () => {
    ws();
    if (i >= n) fail();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = Object.create(null);
      ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        const k = str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        o[k] = val();
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return o; }
        fail();
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(val());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        fail();
      }
    }
    if (c === '"') return str();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    numRe.lastIndex = i;
    const m = numRe.exec(text);
    if (!m) fail();
    i = numRe.lastIndex;
    const num = Number(m[0]);
    return String(num) === m[0] ? num : new RawNum(m[0]);
  };
  const v = val();
  ws();
  if (i !== n) fail();
  return v;
}

function enc(v) {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'boolean': return v ? 'true' : 'false';
    case 'number': return Number.isFinite(v) ? String(v) : 'null';
    case 'string': return JSON.stringify(v);
    default: break;
  }
  if (v instanceof RawNum) return v.text;
  if (Array.isArray(v)) return '[' + v.map(enc).join(',') + ']';
  const parts = [];
  for (const k of Object.keys(v)) {
    if (v[k] === undefined) continue;
    parts.push(JSON.stringify(k) + ':' + enc(v[k]));
  }
  return '{' + parts.join(',') + '}';
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RawNum);
const isNum = (v) => typeof v === 'number' || v instanceof RawNum;
const toNum = (v) => (v instanceof RawNum ? Number(v.text) : v);
const isInt = (v) => (typeof v === 'number' ? Number.isInteger(v) : v instanceof RawNum && /^-?\d+$/.test(v.text));
const has = (o, k) => o !== null && o !== undefined && Object.prototype.hasOwnProperty.call(o, k);
const clone = (v) => (v === undefined ? undefined : parseJSON(enc(v)));
const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');

module.exports = { RawNum, clone, enc, has, isInt, isNum, isObj, md5, parseJSON, toNum };
