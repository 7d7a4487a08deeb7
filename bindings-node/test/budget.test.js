'use strict';
// Spend budgets from a Node API: verifier.spend / refund through the real
// broker, an Express route answering 403 budget_exceeded with its challenge,
// and exact decimal amounts (numbers are refused).
const test = require('node:test');
const assert = require('node:assert/strict');
const { VerificationError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');
const { startPayApi, enrollPayer } = require('./helpers/pay_api.js');

let n = 0;

function enroll(broker, api, budget) {
  return enrollPayer(broker, api, `node-payer-${n++}`, budget);
}

test('spend budgets from Node', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startPayApi(broker);
  t.after(() => api.close());

  await t.test('an Express API spends, retries once per key, and answers 403 beyond the budget', async () => {
    const { session, gid } = await enroll(broker, api, 'payment:execute=150/EUR/day');
    const pay = (amount, key) => session.fetch(`${api.url}/pay?amount=${amount}&key=${key}`, { method: 'POST' });
    let r = await pay('80', 'order-1');
    assert.equal(r.status, 200, await r.clone().text());
    assert.deepEqual(await r.json(), { remaining: '70.00' });
    r = await pay('80', 'order-1');
    assert.deepEqual(await r.json(), { remaining: '70.00' });
    r = await pay('80', 'order-2');
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error, 'budget_exceeded');
    const www = r.headers.get('www-authenticate');
    assert.match(www, /^DPoP error="budget_exceeded"/);
    assert.match(www, /scope="payment:execute"/);
    assert.match(www, /amount="80", currency="EUR"/);
    const shown = await broker.cliJson('grant', 'show', gid);
    assert.equal(shown.budgets[0].spent, '80.00');
    await session.close();
  });

  await t.test('verifier.spend and refund directly, and typed refusals', async () => {
    const { session, gid } = await enroll(broker, api, 'payment:execute=10/EUR/total');
    const url = `${api.url}/pay`;
    const agent = await api.verifier.verify({ method: 'POST', url, headers: session.headers('POST', url) });
    const a = await api.verifier.spend(agent, { scope: 'payment:execute', amount: '9.99', currency: 'EUR', idempotencyKey: 'a' });
    assert.equal(a.remaining, '0.01');
    assert.equal(a.period, 'total');
    assert.equal(a.periodEndsAt, undefined);
    await assert.rejects(
      api.verifier.spend(agent, { scope: 'payment:execute', amount: '0.02', currency: 'EUR', idempotencyKey: 'b' }),
      (e) => e instanceof VerificationError && e.code === 'budget_exceeded' && e.status === 403 && /budget_exceeded/.test(e.wwwAuthenticate),
    );
    // Numbers are refused before anything is sent.
    await assert.rejects(
      api.verifier.spend(agent, { scope: 'payment:execute', amount: 0.01, currency: 'EUR', idempotencyKey: 'c' }),
      (e) => e instanceof TypeError && /decimal string/.test(e.message),
    );
    const back = await api.verifier.refund(agent, 'a');
    assert.equal(back.refunded, true);
    assert.equal(back.remaining, '10.00');
    assert.deepEqual(await api.verifier.refund(agent, 'a'), back);
    const big = await api.verifier.spend(agent, { scope: 'payment:execute', amount: 10n, currency: 'EUR', idempotencyKey: 'd' });
    assert.equal(big.remaining, '0.00');
    // Revoking the grant stops spending at once.
    await broker.cli('revoke', gid);
    await assert.rejects(
      api.verifier.refund(agent, 'nope'),
      (e) => e.code === 'invalid_request',
    );
    await assert.rejects(
      api.verifier.spend(agent, { scope: 'payment:execute', amount: '1', currency: 'EUR', idempotencyKey: 'e' }),
      (e) => e.code === 'invalid_token' && e.status === 401,
    );
    await session.close().catch(() => {});
  });
});
