'use strict';
// Waiting for the owner's approval ends at once, and withdraws the request at
// the broker, when onPrompt throws or the caller's AbortSignal fires.
const test = require('node:test');
const assert = require('node:assert/strict');
const { authenticateWithProton, ProtonPassError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');

const AUD = 'https://travel.example';

test('ending the wait for approval', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const base = { broker: broker.url, audience: AUD, store: 'memory', revokeOnExit: false, scope: ['travel:search'] };
  const waiting = async (agent) => (await broker.cliJson('pending')).filter((w) => w.agent === agent);
  const withdrawn = async (agent) => {
    const end = Date.now() + 5000;
    while ((await waiting(agent)).length > 0) {
      assert.ok(Date.now() < end, 'the request is still waiting at the broker');
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  await t.test('an onPrompt that throws rejects with its error', async () => {
    class PromptBroke extends Error {}
    let thrownAt = 0;
    await assert.rejects(
      authenticateWithProton({
        ...base,
        agentName: 'throws-bot',
        onPrompt: () => {
          thrownAt = Date.now();
          throw new PromptBroke('no terminal to show the code on');
        },
      }),
      (e) => e instanceof PromptBroke && /no terminal/.test(e.message),
    );
    assert.ok(Date.now() - thrownAt < 1000, `${Date.now() - thrownAt} ms`);
    assert.deepEqual(await waiting('throws-bot'), [], 'the request was withdrawn');
  });

  await t.test('an onPrompt whose Promise rejects ends the wait too', async () => {
    await assert.rejects(
      authenticateWithProton({ ...base, agentName: 'async-bot', onPrompt: async () => { throw new RangeError('later'); } }),
      RangeError,
    );
    assert.deepEqual(await waiting('async-bot'), []);
  });

  await t.test('an aborted signal rejects with its reason and withdraws the request', async () => {
    const ac = new AbortController();
    let abortedAt = 0;
    await assert.rejects(
      authenticateWithProton({
        ...base,
        agentName: 'abort-bot',
        signal: ac.signal,
        onPrompt: () => setTimeout(() => { abortedAt = Date.now(); ac.abort(); }, 200),
      }),
      (e) => e.name === 'AbortError',
    );
    assert.ok(Date.now() - abortedAt < 1000, `${Date.now() - abortedAt} ms`);
    await withdrawn('abort-bot');
  });

  await t.test('a signal aborted beforehand starts nothing; a non-signal is refused', async () => {
    await assert.rejects(
      authenticateWithProton({ ...base, agentName: 'never-bot', signal: AbortSignal.abort(new Error('stop')) }),
      /stop/,
    );
    await assert.rejects(
      authenticateWithProton({ ...base, agentName: 'never-bot', signal: 'soon' }),
      (e) => e instanceof ProtonPassError && e.code === 'invalid_request',
    );
    assert.deepEqual(await waiting('never-bot'), []);
  });
});
