'use strict';
// The Express `spend` middleware against the real broker (a grant with a
// budget, spent until budget_exceeded: the 403's challenge and RFC 6749
// body), the amount a per-call refusal names, and amounts that are never
// JavaScript numbers (a TypeError naming the fix).
const test = require('node:test');
const assert = require('node:assert/strict');
const { requireScope, spend } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');
const { running } = require('./helpers/api.js');
const { listenAsResource, enrollPayer } = require('./helpers/pay_api.js');

/** An Express API: POST /charge?amount=A&key=K, the per-call limit, then the budget. */
async function startChargeApi(broker) {
  const { app, server, url, verifier } = await listenAsResource(broker);
  const amount = (req) => req.query.amount;
  app.post(
    '/charge',
    verifier.requireScope('payment:execute', { amount }),
    spend('payment:execute', { verifier, amount, currency: 'EUR', idempotencyKey: (req) => req.query.key }),
    (req, res) => res.json({ remaining: req.spend.remaining, spent: req.spend.amount }),
  );
  // A route whose amount function gives a number: the API's own bug.
  app.post(
    '/float',
    verifier.requireScope('payment:execute', { amount: () => 0.1 }),
    (req, res) => res.json({ never: true }),
  );
  app.use((err, req, res, next) => res.status(500).json({ bug: err.constructor.name, message: err.message }));
  return running(server, url, verifier);
}

/** The body is exactly the RFC 6749 error object. */
async function rfc6749(r, code) {
  const body = await r.json();
  assert.deepEqual(Object.keys(body).sort(), ['error', 'error_description'], JSON.stringify(body));
  assert.equal(body.error, code);
  return body.error_description;
}

test('the spend middleware and exact amounts', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startChargeApi(broker);
  t.after(() => api.close());

  await t.test('spends until the budget runs out, then 403 budget_exceeded with its challenge and body', async () => {
    const { session, gid } = await enrollPayer(broker, api, 'node-charger-1', 'payment:execute=100/EUR/day');
    const charge = (amount, key) => session.fetch(`${api.url}/charge?amount=${amount}&key=${key}`, { method: 'POST' });
    let r = await charge('40', 'c-1');
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), { remaining: '60.00', spent: '40.00' });
    // The same key never spends twice.
    r = await charge('40', 'c-1');
    assert.deepEqual(await r.json(), { remaining: '60.00', spent: '40.00' });
    r = await charge('40', 'c-2');
    assert.deepEqual(await r.json(), { remaining: '20.00', spent: '40.00' });
    r = await charge('40', 'c-3');
    assert.equal(r.status, 403);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    assert.match(r.headers.get('www-authenticate'),
      /^DPoP error="budget_exceeded", error_description="[^"]*", algs="[^"]*", scope="payment:execute", amount="40", currency="EUR"$/);
    assert.match(await rfc6749(r, 'budget_exceeded'), /payment:execute/);
    const shown = await broker.cliJson('grant', 'show', gid);
    assert.equal(shown.budgets[0].spent, '80.00');
    // What remains can still be spent; no amount at all is a 400.
    r = await charge('20', 'c-4');
    assert.deepEqual(await r.json(), { remaining: '0.00', spent: '20.00' });
    r = await session.fetch(`${api.url}/charge?key=c-5`, { method: 'POST' });
    assert.equal(r.status, 400);
    await rfc6749(r, 'invalid_request');
    // Over the token's own per-call limit (under-100): 403 insufficient_scope
    // naming the scope and the amount, before anything is spent.
    r = await charge('120.50', 'c-6');
    assert.equal(r.status, 403);
    assert.match(r.headers.get('www-authenticate'), /^DPoP error="insufficient_scope".*, scope="payment:execute", amount="120.50"$/);
    await rfc6749(r, 'insufficient_scope');
    // Revoked: 401 from the broker, nothing spent (sent without the session's
    // renewal, which would fail on the revoked grant before the API answers).
    await broker.cli('revoke', gid);
    const url = `${api.url}/charge?amount=1&key=c-7`;
    r = await fetch(url, { method: 'POST', headers: session.headers('POST', url) });
    assert.equal(r.status, 401);
    await rfc6749(r, 'invalid_token');
    await session.close().catch(() => {});
  });

  await t.test('numbers, boxed or not, are refused as amounts with a TypeError naming the fix', async () => {
    const fix = /JavaScript number.*pass a decimal string such as '12\.50'/;
    for (const amount of [0.1, 12, new Number(0.1)]) { // eslint-disable-line no-new-wrappers
      assert.throws(() => requireScope('payment:execute', { verifier: api.verifier, amount }), (e) => e instanceof TypeError && fix.test(e.message));
      assert.throws(() => spend('payment:execute', { verifier: api.verifier, amount, currency: 'EUR', idempotencyKey: 'k' }),
        (e) => e instanceof TypeError && fix.test(e.message));
      const agent = { grantId: 'g', tokenId: 't' };
      await assert.rejects(api.verifier.spend(agent, { scope: 'payment:execute', amount, currency: 'EUR', idempotencyKey: 'k' }),
        (e) => e instanceof TypeError && fix.test(e.message));
      await assert.rejects(api.verifier.check({ method: 'POST', url: `${api.url}/charge`, headers: [] }, { scope: 'payment:execute', amount }),
        (e) => e instanceof TypeError && fix.test(e.message));
    }
    // Strings, bigints and decimal objects are exact: accepted.
    requireScope('payment:execute', { verifier: api.verifier, amount: '0.10' });
    requireScope('payment:execute', { verifier: api.verifier, amount: 10n });
    requireScope('payment:execute', { verifier: api.verifier, amount: { toString: () => '9.99' } });
    // A function giving a number fails on the request, through the app's error handler.
    const { session } = await enrollPayer(broker, api, 'node-charger-2', 'payment:execute=100/EUR/day');
    const r = await session.fetch(`${api.url}/float`, { method: 'POST' });
    assert.equal(r.status, 500);
    const body = await r.json();
    assert.equal(body.bug, 'TypeError');
    assert.match(body.message, fix);
    await session.close().catch(() => {});
  });
});
