'use strict';
// Mango selectors (enough for _find, _changes and replication selectors).
const { enc, has, isInt, isNum, isObj, toNum } = require('./json');

function typeRank(v) {
  if (v === null || v === undefined) return 0;
  if (v === false) return 1;
  if (v === true) return 2;
  if (isNum(v)) return 3;
  if (typeof v === 'string') return 4;
  if (Array.isArray(v)) return 5;
  return 6;
}

function collate(a, b) {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 3) return toNum(a) - toNum(b);
  if (ra === 4) return a < b ? -1 : a > b ? 1 : 0;
  if (ra === 5) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = collate(a[i], b[i]);
      if (c) return c;
    }
    return a.length - b.length;
  }
  if (ra === 6) return enc(a) < enc(b) ? -1 : enc(a) > enc(b) ? 1 : 0;
  return 0;
}

const deepEq = (a, b) => collate(a, b) === 0 && enc(a) === enc(b);

function fieldValue(doc, path) {
  let v = doc;
  for (const part of path.split('.')) {
    if (!isObj(v) || !has(v, part)) return undefined;
    v = v[part];
  }
  return v;
}

function condMatch(v, cond) {
  if (!isObj(cond) || !Object.keys(cond).some((k) => k.startsWith('$'))) return v !== undefined && deepEq(v, cond);
  for (const op of Object.keys(cond)) {
    const arg = cond[op];
    let ok;
    switch (op) {
      case '$eq': ok = v !== undefined && deepEq(v, arg); break;
      case '$ne': ok = v === undefined || !deepEq(v, arg); break;
      case '$gt': ok = v !== undefined && collate(v, arg) > 0; break;
      case '$gte': ok = v !== undefined && collate(v, arg) >= 0; break;
      case '$lt': ok = v !== undefined && collate(v, arg) < 0; break;
      case '$lte': ok = v !== undefined && collate(v, arg) <= 0; break;
      case '$in': ok = v !== undefined && Array.isArray(arg) && arg.some((x) => deepEq(v, x) || (Array.isArray(v) && v.some((y) => deepEq(y, x)))); break;
      case '$nin': ok = v !== undefined && Array.isArray(arg) && !arg.some((x) => deepEq(v, x)); break;
      case '$exists': ok = (v !== undefined) === (arg === true); break;
      case '$type': ok = v !== undefined && ({ null: 0, boolean: -1, number: 3, string: 4, array: 5, object: 6 })[arg] === (typeof v === 'boolean' ? -1 : typeRank(v)); break;
      case '$size': ok = Array.isArray(v) && v.length === toNum(arg); break;
      case '$all': ok = Array.isArray(v) && Array.isArray(arg) && arg.every((x) => v.some((y) => deepEq(x, y))); break;
      case '$elemMatch': ok = Array.isArray(v) && v.some((x) => (isObj(x) && isObj(arg) && !Object.keys(arg).some((k) => k.startsWith('$')) ? mangoMatch(x, arg) : condMatch(x, arg))); break;
      case '$allMatch': ok = Array.isArray(v) && v.length > 0 && v.every((x) => condMatch(x, arg)); break;
      case '$regex': ok = typeof v === 'string' && new RegExp(arg).test(v); break;
      case '$mod': ok = isInt(v) && Array.isArray(arg) && toNum(v) % toNum(arg[0]) === toNum(arg[1]); break;
      case '$not': ok = !condMatch(v, arg); break;
      default: ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

function mangoMatch(doc, sel) {
  if (!isObj(sel)) return false;
  for (const k of Object.keys(sel)) {
    const c = sel[k];
    if (k === '$and') { if (!Array.isArray(c) || !c.every((s) => mangoMatch(doc, s))) return false; } else if (k === '$or') { if (!Array.isArray(c) || !c.some((s) => mangoMatch(doc, s))) return false; } else if (k === '$nor') { if (!Array.isArray(c) || c.some((s) => mangoMatch(doc, s))) return false; } else if (k === '$not') { if (mangoMatch(doc, c)) return false; } else if (!condMatch(fieldValue(doc, k), c)) return false;
  }
  return true;
}

module.exports = { collate, condMatch, deepEq, fieldValue, mangoMatch, typeRank };
