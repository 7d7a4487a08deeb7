'use strict';
// Revocation when an agent process ends: SIGTERM, SIGINT, process.exit()
// and a natural end. The parent then presents the child's credentials to a
// running verifier, which must refuse them as revoked.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { createInterface } = require('node:readline');
const { startBroker } = require('./helpers/broker.js');
const { startApi } = require('./helpers/api.js');
const { eventually } = require('./helpers/eventually.js');

test('an agent process revokes its tokens when it ends', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startApi(broker.url);
  t.after(() => api.close());
  const target = `${api.url}/trips`;

  for (const mode of ['signal', 'sigint', 'exit', 'natural']) {
    await t.test(mode, async () => {
      const g = await broker.cliJson('grant', 'create', '--agent', `exit-${mode}`, '--scope', 'travel:search', '--audience', api.url);
      const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'exit-agent.js')], {
        env: { ...process.env, BROKER: broker.url, AUDIENCE: api.url, CODE: g.enrollment_code, AGENT: `exit-${mode}`, MODE: mode === 'sigint' ? 'signal' : mode, URL: target },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      const line = await new Promise((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('exit', () => reject(new Error('the agent exited before printing')));
      });
      const proofs = JSON.parse(line).map((h) => Object.entries(h));
      if (mode === 'signal') child.kill('SIGTERM');
      if (mode === 'sigint') child.kill('SIGINT');
      const how = await exited;
      if (mode === 'signal') assert.equal(how.signal, 'SIGTERM', 'the signal ends the process as it would have');
      else if (mode === 'sigint') assert.equal(how.signal, 'SIGINT');
      else assert.equal(how.code, 0);
      const refused = await eventually(async () => {
        const headers = proofs.shift();
        assert.ok(headers, 'ran out of proofs before the verifier refused the token');
        return (await api.verifier.check({ method: 'GET', url: target, headers })).rejection;
      });
      assert.ok(refused, `the token of a process ended by ${mode} is still accepted`);
      assert.equal(refused.reason, 'revoked');
    });
  }
});
