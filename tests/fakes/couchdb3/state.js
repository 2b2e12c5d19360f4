'use strict';
// Options (the command line), the server identity and the port it listens on.
const crypto = require('crypto');

const opts = { timeScale: 0.01, password: 'pass', maxJobs: null, interval: 60000, port: 0, verbose: false, nodes: 1, lagScale: null };
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    const v = () => {
      if (i + 1 >= a.length) die(`${k} needs a value`);
      return a[++i];
    };
    if (k === '--time-scale') opts.timeScale = Number(v());
    else if (k === '--password') opts.password = v();
    else if (k === '--max-jobs') opts.maxJobs = parseInt(v(), 10);
    else if (k === '--interval') opts.interval = Number(v());
    else if (k === '--port') opts.port = parseInt(v(), 10);
    else if (k === '--verbose') opts.verbose = true;
    else if (k === '--nodes') opts.nodes = parseInt(v(), 10);
    else if (k === '--lag-scale') opts.lagScale = Number(v());
    else if (k === '--help' || k === '-h') {
      process.stdout.write('usage: fake_couchdb3.js [--time-scale F] [--password P] [--max-jobs N] [--interval MS] [--port N] [--nodes N] [--lag-scale F] [--verbose]\n');
      process.exit(0);
    } else die(`unknown option ${k}`);
  }
  if (!(opts.timeScale > 0)) die('--time-scale must be a number > 0');
  if (opts.maxJobs !== null && !(opts.maxJobs >= 0)) die('--max-jobs must be an integer >= 0');
  if (!(opts.interval > 0)) die('--interval must be > 0');
  if (opts.lagScale !== null && !(opts.lagScale > 0)) die('--lag-scale must be a number > 0');
  if (!(opts.nodes >= 1 && opts.nodes <= 64)) die('--nodes must be an integer from 1 to 64');
}

function die(msg) {
  process.stderr.write(`fake_couchdb3: ${msg}\n`);
  process.exit(2);
}

const NODE = 'couchdb@127.0.0.1';
const ADMIN = 'admin';
const SERVER_UUID = crypto.randomBytes(16).toString('hex');
const state = { port: 0 };

module.exports = { ADMIN, NODE, SERVER_UUID, die, opts, state };
