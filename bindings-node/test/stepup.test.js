'use strict';
// Step-up from a Node agent: a payment above the token's per-call limit is
// refused with 403; session.stepUp asks the owner (who approves through the
// CLI from onPrompt) and the one-time token pays once, then is refused.
const test = require('node:test');
const assert = require('node:assert/strict');
const { ProtonPassError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');
const { startPayApi, enrollPayer } = require('./helpers/pay_api.js');
const express = require('express');
const { Verifier } = require('protonpass-agent');
const { listen, running } = require('./helpers/api.js');

// POST /book?amount=A: verified locally (the token's per-call limit), nothing
// spent at the broker; its verifier has resource credentials or none.
async function startBookApi(broker, registered) {
  const app = express();
  const { server, url } = await listen(app);
  const options = { issuer: broker.url, audience: url, baseUrl: url, followFeed: false };
  if (registered) {
    const rs = await broker.cliJson('resource', 'add', url);
    options.credentials = { clientId: rs.client_id, clientSecret: rs.client_secret };
  }
  const verifier = new Verifier(options);
  await verifier.ready();
  app.post('/book', verifier.requireScope('payment:execute', { amount: (req) => req.query.amount }), (req, res) => {
    res.json({ booked: req.query.amount });
  });
  return running(server, url, verifier);
}

let n = 0;

async function enroll(broker, api, allowStepUp, decision) {
  const prompts = [];
  const { session } = await enrollPayer(broker, api, `node-stepup-${n++}`, 'payment:execute=300/EUR/day', {
    allowStepUp,
    onPrompt: (p) => {
      prompts.push(p);
      broker.cliJson('stepup', 'list').then((w) => broker.cliJson('stepup', decision, w[0].id));
    },
  });
  return { session, prompts };
}

test('step-up from Node', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startPayApi(broker);
  t.after(() => api.close());

  await t.test('an approved payment gets a one-time token that pays once', async () => {
    const { session, prompts } = await enroll(broker, api, true, 'approve');
    const url = `${api.url}/pay?amount=250&key=trip-1`;
    let r = await session.fetch(url, { method: 'POST' });
    assert.equal(r.status, 403);
    const token = await session.stepUp(url, r.headers.get('www-authenticate'), {
      amount: '250', currency: 'EUR', payee: 'Air Example', bindingMessage: 'Flight to Paris',
    });
    assert.equal(prompts.length, 1);
    assert.equal(prompts[0].verificationUri, `${broker.url}/stepup`);
    assert.ok(token.expiresIn <= 300);
    assert.deepEqual(JSON.parse(token.authorizationDetails),
      [{ type: 'payment', amount: '250.00', currency: 'EUR', payee: 'Air Example', scope: 'payment:execute' }]);
    r = await fetch(url, { method: 'POST', headers: session.oneTimeHeaders(token, 'POST', url) });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), { remaining: '50.00' });
    // Spent: the same token again (a fresh proof) is refused by the verifier.
    const again = `${api.url}/pay?amount=250&key=trip-2`;
    r = await fetch(again, { method: 'POST', headers: session.oneTimeHeaders(token, 'POST', again) });
    assert.equal(r.status, 401, await r.clone().text());
    assert.equal((await r.json()).error, 'invalid_token');
    assert.match(r.headers.get('www-authenticate'), /^DPoP error="invalid_token"/);
  });

  for (const registered of [true, false]) {
    await t.test(`a verifying API ${registered ? 'with' : 'without'} credentials: one-time tokens ${registered ? 'accepted once' : 'refused'}`, async () => {
      const book = await startBookApi(broker, registered);
      try {
        const { session } = await enroll(broker, book, true, 'approve');
        const url = `${book.url}/book?amount=250`;
        let r = await session.fetch(url, { method: 'POST' });
        assert.equal(r.status, 403);
        const token = await session.stepUp(url, r.headers.get('www-authenticate'), { amount: '250', currency: 'EUR', payee: 'Air Example' });
        const send = () => fetch(url, { method: 'POST', headers: session.oneTimeHeaders(token, 'POST', url) });
        if (registered) {
          r = await send();
          assert.equal(r.status, 200, await r.clone().text());
          assert.deepEqual(await r.json(), { booked: '250' });
        }
        r = await send();
        assert.equal(r.status, 401, await r.clone().text());
        const body = await r.json();
        assert.equal(body.error, 'invalid_token');
        assert.match(body.error_description, registered ? /this one-time token was already used/ : /resource credentials/);
        // The agent's own token is verified there as before.
        r = await session.fetch(`${book.url}/book?amount=50`, { method: 'POST' });
        assert.equal(r.status, 200);
      } finally {
        await book.close();
      }
    });
  }

  await t.test('session.fetch with stepUp asks once and retries with the one-time token', async () => {
    const { session, prompts } = await enroll(broker, api, true, 'approve');
    const stepUp = { payee: 'Air Example', amount: '250', currency: 'EUR', bindingMessage: 'Flight' };
    let r = await session.fetch(`${api.url}/pay?amount=250&key=trip-f1`, { method: 'POST', stepUp });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), { remaining: '50.00' });
    assert.equal(prompts.length, 1);
    // Within the token's own limit: no step-up.
    r = await session.fetch(`${api.url}/pay?amount=20&key=trip-f2`, { method: 'POST', stepUp });
    assert.equal(r.status, 200);
    assert.equal(prompts.length, 1);
    // Over what the day's budget has left: approved for exactly this payment, once.
    r = await session.fetch(`${api.url}/pay?amount=90&key=trip-f3`, { method: 'POST', stepUp });
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), { remaining: '0.00' });
    assert.equal(prompts.length, 2);
    // Without stepUp the next payment is refused as it was.
    r = await session.fetch(`${api.url}/pay?amount=10&key=trip-f4`, { method: 'POST' });
    assert.equal(r.status, 403);
    assert.match(r.headers.get('www-authenticate'), /budget_exceeded/);
    assert.equal(prompts.length, 2);
  });

  await t.test('session.fetch does not step up unless the session allows it', async () => {
    const { session, prompts } = await enroll(broker, api, false, 'approve');
    const r = await session.fetch(`${api.url}/pay?amount=250&key=trip-f5`, {
      method: 'POST', stepUp: { payee: 'Air Example', amount: '250', currency: 'EUR' },
    });
    assert.equal(r.status, 403);
    assert.equal(prompts.length, 0);
  });

  await t.test('a denial rejects with access_denied', async () => {
    const { session } = await enroll(broker, api, true, 'deny');
    const url = `${api.url}/pay?amount=250&key=trip-3`;
    const r = await session.fetch(url, { method: 'POST' });
    await assert.rejects(
      session.stepUp(url, r.headers.get('www-authenticate'), { amount: '250', currency: 'EUR', payee: 'x' }),
      (e) => e instanceof ProtonPassError && e.code === 'access_denied',
    );
  });

  await t.test('step-up is off by default', async () => {
    const { session, prompts } = await enroll(broker, api, false, 'approve');
    const url = `${api.url}/pay?amount=250&key=trip-4`;
    const r = await session.fetch(url, { method: 'POST' });
    await assert.rejects(
      session.stepUp(url, r.headers.get('www-authenticate'), { payee: 'x', amount: '250', currency: 'EUR' }),
      (e) => e instanceof ProtonPassError && e.code === 'invalid_request',
    );
    assert.equal(prompts.length, 0);
  });
});
