'use strict';
// Revision trees: rev strings, the winning leaf, leaves in CouchDB order.

const revStr = (leaf) => `${leaf.pos}-${leaf.hash}`;
function parseRev(rev) {
  const m = typeof rev === 'string' && /^(\d+)-([0-9a-zA-Z]+)$/.exec(rev);
  if (!m) return null;
  return { pos: parseInt(m[1], 10), hash: m[2] };
}

function computeWinner(doc) {
  let best = null;
  for (const l of doc.leaves) {
    if (!best) { best = l; continue; }
    const a = [l.deleted ? 0 : 1, l.pos, l.hash];
    const b = [best.deleted ? 0 : 1, best.pos, best.hash];
    if (a[0] > b[0] || (a[0] === b[0] && (a[1] > b[1] || (a[1] === b[1] && a[2] > b[2])))) best = l;
  }
  doc.winner = best;
}

function leavesSorted(doc) { // winner first, then the others by rev descending (as _changes style=all_docs)
  const rest = doc.leaves.filter((l) => l !== doc.winner).sort((x, y) => (y.pos - x.pos) || (y.hash < x.hash ? -1 : y.hash > x.hash ? 1 : 0));
  return [doc.winner, ...rest];
}

module.exports = { computeWinner, leavesSorted, parseRev, revStr };
