'use strict';
// A Node agent waiting for a step-up: denial, revocation of the grant while
// waiting, and the end of the request's lifetime each reject session.stepUp
// with the typed error; without onPrompt the default prompt prints one line
// on stderr.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { authenticateWithProton, ProtonPassError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');

const AUD = 'https://wait.example';
const CHALLENGE = 'DPoP error="insufficient_scope", scope="payment:execute"';
let n = 0;

/** A session allowed to step up whose onPrompt runs `owner(gid)`, as the owner acting elsewhere would. */
async function waiting(broker, owner) {
  const agent = `node-wait-${n++}`;
  const g = await broker.cliJson('grant', 'create', '--agent', agent, '--scope', 'payment:execute:under-100',
    '--audience', AUD);
  const prompts = [];
  const session = await authenticateWithProton({
    broker: broker.url,
    audience: AUD,
    store: 'memory',
    agentName: agent,
    scope: ['payment:execute:under-100'],
    enrollmentCode: g.enrollment_code,
    revokeOnExit: false,
    allowStepUp: true,
    onPrompt: (p) => {
      prompts.push(p);
      owner(g.grant_id, agent).catch(() => {});
    },
  });
  return { session, prompts, gid: g.grant_id };
}

const ask = (session) => session.stepUp(`${AUD}/pay`, CHALLENGE,
  { amount: '250', currency: 'EUR', payee: 'Air Example', bindingMessage: 'Flight' });

const code = (want) => (e) => e instanceof ProtonPassError && e.code === want;

test('step-up waits from Node end with typed errors', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const short = await startBroker(['--stepup-ttl', '2']);
  t.after(() => short.stop());

  await t.test('denial rejects with access_denied', async () => {
    const { session, prompts } = await waiting(broker, async (_gid, agent) => {
      const w = (await broker.cliJson('stepup', 'list')).filter((x) => x.agent === agent);
      await broker.cliJson('stepup', 'deny', w[0].id);
    });
    await assert.rejects(ask(session), code('access_denied'));
    assert.deepEqual(prompts.map((p) => [p.verificationUri, p.userCode]), [[`${broker.url}/stepup`, '']]);
    session.close();
  });

  await t.test('revoking the grant while waiting rejects with invalid_grant', async () => {
    const { session, prompts } = await waiting(broker, (gid) => broker.cli('revoke', gid));
    await assert.rejects(ask(session), code('invalid_grant'));
    assert.equal(prompts.length, 1);
    session.close();
  });

  await t.test("the end of the request's lifetime rejects with expired_token", async () => {
    const { session, prompts } = await waiting(short, async () => {});
    const start = Date.now();
    await assert.rejects(ask(session), code('expired_token'));
    assert.ok(Date.now() - start < 20000);
    assert.deepEqual(prompts.map((p) => p.expiresIn), [2]);
    session.close();
  });

  await t.test('the default prompt prints one line on stderr', async () => {
    const agent = `node-wait-default-${n++}`;
    const g = await short.cliJson('grant', 'create', '--agent', agent, '--scope', 'payment:execute:under-100',
      '--audience', AUD);
    const { stdout, stderr } = await new Promise((resolve, reject) => {
      execFile(process.execPath, [path.join(__dirname, 'fixtures', 'stepup-wait-agent.js')], {
        env: { ...process.env, BROKER: short.url, AUDIENCE: AUD, CODE: g.enrollment_code, AGENT: agent },
        timeout: 30000,
      }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve({ stdout: out, stderr: errOut })));
    });
    assert.equal(stdout, 'expired_token\n');
    const lines = stderr.split('\n').filter((l) => l.trim());
    assert.deepEqual(lines, [
      `This call needs the owner's approval: approve it at ${short.url}/stepup (valid 1 min). Waiting for approval...`,
    ]);
  });
});
