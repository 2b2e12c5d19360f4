// PouchDB 9's client-side replication between two server databases, driven from the
// command line for couchlua's interop tests and bench/run replicate:
//   node replicate.js [--sync] [--batch-size N] [--batches-limit N] SOURCE_URL TARGET_URL
// Prints one JSON line: {"ok":true,"ms":..,"docs_read":..,"docs_written":..,"doc_write_failures":..,
// "max_rss_kb":..,"cpu_ms":..} (for --sync, "push" and "pull" hold each direction's counts;
// max_rss_kb and cpu_ms are this process's, for the benchmark). On failure: {"ok":false,
// "status":..,"name":..,"reason":..} and exit status 1. Never prints a URL: they may hold
// credentials.
'use strict';
const PouchDB = require(process.env.COUCHLUA_POUCHDB_PEER || 'pouchdb');

function usage(msg) {
  process.stderr.write(`replicate.js: ${msg}\nusage: node replicate.js [--sync] [--batch-size N] [--batches-limit N] SOURCE_URL TARGET_URL\n`);
  process.exit(2);
}

const opts = {batch_size: 500, batches_limit: 4};
const urls = [];
let sync = false;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--sync') sync = true;
  else if (a === '--batch-size' || a === '--batches-limit') {
    const n = Number(args[++i]);
    if (!Number.isInteger(n) || n < 1) usage(`${a} wants a positive integer`);
    opts[a === '--batch-size' ? 'batch_size' : 'batches_limit'] = n;
  } else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else urls.push(a);
}
if (urls.length !== 2) usage('wants SOURCE_URL and TARGET_URL');

function counts(r) {
  return {docs_read: r.docs_read, docs_written: r.docs_written,
          doc_write_failures: r.doc_write_failures, status: r.status};
}

const started = Date.now();
const source = new PouchDB(urls[0], {skip_setup: true});
const target = new PouchDB(urls[1], {skip_setup: true});
const run = sync ? PouchDB.sync(source, target, opts) : PouchDB.replicate(source, target, opts);
run.then((r) => {
  const usage = process.resourceUsage();
  const out = {ok: true, ms: Date.now() - started, max_rss_kb: usage.maxRSS,
               cpu_ms: Math.round((usage.userCPUTime + usage.systemCPUTime) / 1000)};
  if (sync) { out.push = counts(r.push); out.pull = counts(r.pull); }
  else Object.assign(out, counts(r));
  process.stdout.write(JSON.stringify(out) + '\n');
}, (err) => {
  process.stdout.write(JSON.stringify({ok: false, status: err.status, name: err.name,
                                       reason: String(err.reason || err.message)}) + '\n');
  process.exit(1);
});
