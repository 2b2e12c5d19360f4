'use strict';
// Cluster mode (--nodes N, N > 1): N nodes behind one address, as the 3-node CouchDB 3.4.3
// recorded in fixtures/couchdb-3.4.3-cluster (beside DESIGN.md) behaved:
//   - a _replicator document's job runs on the node CouchDB picks by document id: the live
//     nodes sorted, index crc32(term_to_binary({<<"_replicator">>, DocId})) rem N;
//   - a node starts jobs only T_BOOT recorded seconds after it boots (its rows are absent
//     from /_scheduler/docs meanwhile, and counted in total_rows);
//   - a one-shot that finishes: its row is gone for T_ROW_GONE s, then says "completed"
//     while the document itself gets its _replication_state only T_DOC_LAG s after the end;
//   - a DELETE of a document whose current revision the replicator wrote answers 202.
// With one node (the default) nothing here changes what the fake answers.
// --lag-scale F scales the two lags (row gone, document late) apart from --time-scale: a
// suite run at --time-scale 0.01 sees them at their recorded length with F = 1.
const { NODE, opts } = require('./state');
const { vnow } = require('./clock');

const CLUSTER = opts.nodes > 1;
const NODES = CLUSTER ? Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}@127.0.0.1`) : [NODE];
const SORTED = [...NODES].sort();
const LOCAL = NODES[0]; // the node the requests reach (the recordings went through n1)
const T_BOOT = 5;
const T_ROW_GONE = 1;
const T_DOC_LAG = 2;

// a lag of `sec` recorded seconds, on the recorded timeline (see --lag-scale)
const lag = (sec) => (opts.lagScale === null ? sec : (sec * opts.lagScale) / opts.timeScale);

const bootedAt = new Map(NODES.map((n) => [n, 0]));

const CRC = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// term_to_binary({Bin1, Bin2}): 131, SMALL_TUPLE_EXT 2, then BINARY_EXT len32 bytes, twice
function termOfPair(a, b) {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  const out = Buffer.alloc(3 + 5 + x.length + 5 + y.length);
  let o = 0;
  out[o++] = 131; out[o++] = 104; out[o++] = 2;
  out[o++] = 109; out.writeUInt32BE(x.length, o); o += 4; x.copy(out, o); o += x.length;
  out[o++] = 109; out.writeUInt32BE(y.length, o); o += 4; y.copy(out, o);
  return out;
}

// mem3:dbname of the replicator database's shards is the database's own name
function ownerNode(dbName, docId) {
  if (!CLUSTER) return NODE;
  return SORTED[crc32(termOfPair(dbName, docId)) % SORTED.length];
}

const bootedAtOf = (node) => bootedAt.get(node);

// recorded seconds until `node` starts jobs (0: it does now)
function bootWait(node) {
  if (!CLUSTER) return 0;
  return Math.max(0, bootedAt.get(node) + T_BOOT - vnow());
}

const restartListeners = [];
function restartNode(node) {
  if (!bootedAt.has(node)) return false;
  bootedAt.set(node, vnow());
  for (const fn of restartListeners) fn(node);
  return true;
}

// revisions the replicator itself wrote (db \0 id -> rev): deleting one answers 202
const replicatorRevs = new Map();
const markReplicatorRev = (db, id, rev) => { if (CLUSTER) replicatorRevs.set(`${db}\0${id}`, rev); };
const deleteStatus = (db, id, currentRev) => (CLUSTER && replicatorRevs.get(`${db}\0${id}`) === currentRev ? 202 : 200);

function describe() {
  return { nodes: NODES, booted_at: Object.fromEntries(bootedAt), boot_delay: T_BOOT, row_gone: T_ROW_GONE, doc_lag: T_DOC_LAG };
}

module.exports = { CLUSTER, LOCAL, NODES, T_BOOT, T_DOC_LAG, T_ROW_GONE, bootWait, bootedAt: bootedAtOf, crc32, deleteStatus, describe, lag, markReplicatorRev, ownerNode, restartListeners, restartNode, termOfPair };
