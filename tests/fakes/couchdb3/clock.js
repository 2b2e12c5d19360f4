'use strict';
// Time: the wall clock for timestamps, and the recorded timeline (scaled, freezable).
const { opts } = require('./state');

const isoSec = (ms = Date.now()) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const unixSec = (ms = Date.now()) => Math.floor(ms / 1000);
const httpDate = (ms = Date.now()) => new Date(ms).toUTCString();

const clock = { frozen: false, vbase: 0, rbase: performance.now(), queue: [], real: null, seq: 0 };

function vnow() {
  if (clock.frozen) return clock.vbase;
  return clock.vbase + (performance.now() - clock.rbase) / 1000 / opts.timeScale;
}

// after(seconds of the recorded timeline, fn) -> handle with .cancel()
function after(sec, fn) {
  const t = { at: vnow() + Math.max(0, sec), fn, n: clock.seq++, cancelled: false };
  t.cancel = () => { t.cancelled = true; };
  let lo = 0;
  let hi = clock.queue.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const q = clock.queue[mid];
    if (q.at < t.at || (q.at === t.at && q.n < t.n)) lo = mid + 1;
    else hi = mid;
  }
  clock.queue.splice(lo, 0, t);
  arm();
  return t;
}

function arm() {
  if (clock.real) { clearTimeout(clock.real); clock.real = null; }
  while (clock.queue.length && clock.queue[0].cancelled) clock.queue.shift();
  if (clock.frozen || !clock.queue.length) return;
  const ms = (clock.queue[0].at - vnow()) * opts.timeScale * 1000;
  clock.real = setTimeout(fire, Math.max(0, Math.ceil(ms)));
}

function runTimer(t) {
  try { t.fn(); } catch (e) { process.stderr.write(`fake_couchdb3: timer failed: ${e.stack}\n`); }
}

function fire() {
  clock.real = null;
  const now = vnow();
  while (clock.queue.length && clock.queue[0].at <= now + 1e-9) {
    const t = clock.queue.shift();
    if (!t.cancelled) runTimer(t);
  }
  arm();
}

function clockFreeze() {
  if (clock.frozen) return;
  clock.vbase = vnow();
  clock.frozen = true;
  arm();
}

function clockThaw() {
  if (!clock.frozen) return;
  clock.rbase = performance.now();
  clock.frozen = false;
  arm();
}

function clockAdvance(sec) {
  const wasFrozen = clock.frozen;
  clockFreeze();
  const target = clock.vbase + Math.max(0, sec);
  while (clock.queue.length && clock.queue[0].at <= target) {
    const t = clock.queue.shift();
    if (t.cancelled) continue;
    clock.vbase = Math.max(clock.vbase, t.at);
    runTimer(t);
  }
  clock.vbase = target;
  if (!wasFrozen) clockThaw();
  else arm();
}

module.exports = { after, arm, clock, clockAdvance, clockFreeze, clockThaw, fire, httpDate, isoSec, runTimer, unixSec, vnow };
