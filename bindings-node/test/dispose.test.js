'use strict';
// `await using` in TypeScript: the typed sample is compiled with tsc and run
// as an agent process; leaving its block must revoke the session.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync, spawn } = require('node:child_process');
const { startBroker } = require('./helpers/broker.js');
const { startApi } = require('./helpers/api.js');

const root = path.resolve(__dirname, '..');
const outDir = path.join(__dirname, 'types', 'out');

test('`await using` revokes at the end of the block', async (t) => {
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  fs.rmSync(outDir, { recursive: true, force: true });
  const built = spawnSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types'), '--noEmit', 'false', '--outDir', outDir], {
    encoding: 'utf8',
  });
  assert.equal(built.status, 0, built.stdout + built.stderr);
  t.after(() => fs.rmSync(outDir, { recursive: true, force: true }));

  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startApi(broker.url);
  t.after(() => api.close());
  const target = `${api.url}/trips`;
  const g = await broker.cliJson('grant', 'create', '--agent', 'typed-bot', '--scope', 'travel:search', '--audience', api.url);
  const child = spawn(process.execPath, [path.join(outDir, 'sample.js')], {
    env: { ...process.env, BROKER: broker.url, AUDIENCE: api.url, CODE: g.enrollment_code, TARGET: target },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  const [proofLine, resultLine] = out.trim().split('\n');
  assert.deepEqual(JSON.parse(resultLine), { closed: true });
  // revokeOnExit was off: the revocation came from leaving the block.
  const proofs = JSON.parse(proofLine).map((h) => Object.entries(h));
  let refused;
  for (const headers of proofs) {
    refused = (await api.verifier.check({ method: 'GET', url: target, headers })).rejection;
    if (refused) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(refused?.reason, 'revoked');
});
