'use strict';
// Starts the real broker binary on 127.0.0.1 port 0 with a throw-away data
// directory, and drives its owner CLI (approve, deny, grant create, revoke).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFile } = require('node:child_process');
const { createInterface } = require('node:readline');

const repo = path.resolve(__dirname, '..', '..', '..');

/** The broker binary: PROTONPASS_BROKER_BIN, else the newest cargo build. */
function brokerBin() {
  if (process.env.PROTONPASS_BROKER_BIN) return process.env.PROTONPASS_BROKER_BIN;
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(repo, 'target');
  const candidates = [path.join(targetDir, 'debug', 'protonpass-broker')];
  for (const d of fs.existsSync(targetDir) ? fs.readdirSync(targetDir) : []) {
    candidates.push(path.join(targetDir, d, 'debug', 'protonpass-broker'));
  }
  const found = candidates
    .filter((p) => fs.existsSync(p))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!found.length) {
    throw new Error('no broker binary: run `cargo build -p protonpass-broker` or set PROTONPASS_BROKER_BIN');
  }
  return found[0];
}

function tmpdir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Start a broker. `args` are extra global options (e.g. ['--access-ttl', '60']).
 * Resolves to { url, data, cli(...args), cliJson(...args), stop() }.
 */
async function startBroker(args = []) {
  const bin = brokerBin();
  const data = tmpdir('ppa-broker-');
  const common = ['--data', data, '--device-interval', '1', ...args];
  const child = spawn(bin, [...common, 'serve', '--addr', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    if (stderr.length < 20000) stderr += d;
  });
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the broker did not start in 30 s:\n${stderr}`)), 30000);
    lines.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the broker exited (${code}):\n${stderr}`));
    });
  });
  lines.on('line', () => {});
  const ev = JSON.parse(first);
  if (ev.event !== 'listening') throw new Error(`unexpected first line: ${first}`);
  const cli = (...a) =>
    new Promise((resolve, reject) => {
      execFile(bin, [...common, ...a], { timeout: 30000 }, (err, stdout, serr) => {
        if (err) reject(new Error(`protonpass-broker ${a.join(' ')} failed: ${serr || err.message}`));
        else resolve(stdout);
      });
    });
  return {
    url: ev.issuer,
    addr: ev.addr,
    data,
    bin,
    cli,
    cliJson: async (...a) => JSON.parse(await cli(...a, '--json')),
    stop: async () => {
      if (child.exitCode === null) {
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        // A graceful shutdown waits for open revocation streams: bound it.
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await done;
        clearTimeout(timer);
      }
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
}

module.exports = { startBroker, brokerBin, tmpdir, repo };
