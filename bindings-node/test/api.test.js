'use strict';
// session.fetch against a small Express API protected by the Node Verifier:
// scopes, limits, nonce challenges, renewal, revocation, close and dispose.
const test = require('node:test');
const assert = require('node:assert/strict');
const { authenticateWithProton, Verifier, VerificationError, requireScope, ProtonPassError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');
const { startApi } = require('./helpers/api.js');
const { eventually } = require('./helpers/eventually.js');

async function enroll(broker, api, agent, scope, extra = {}) {
  const g = await broker.cliJson('grant', 'create', '--agent', agent, '--scope', scope, '--audience', api.url);
  return authenticateWithProton({
    broker: broker.url,
    audience: api.url,
    store: 'memory',
    agentName: agent,
    scope: scope.split(' '),
    enrollmentCode: g.enrollment_code,
    revokeOnExit: false,
    ...extra,
  });
}

test('session.fetch against an Express API protected by the Verifier', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startApi(broker.url);
  t.after(() => api.close());

  await t.test('an allowed call, with the reason signed into the proof', async () => {
    const s = await enroll(broker, api, 'travel-bot', 'travel:search travel:book', { reason: 'plan the trip' });
    const r = await s.fetch(`${api.url}/trips`);
    assert.equal(r.status, 200);
    const body = await r.json();
    assert.deepEqual(body.trips, ['GVA-LIS']);
    assert.equal(body.reason, 'plan the trip');
    const b = await s.fetch(`${api.url}/bookings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ trip: 'GVA-LIS' }),
      reason: 'book the cheapest',
    });
    assert.equal(b.status, 201);
    assert.deepEqual(await b.json(), { booked: 'GVA-LIS', by: 'travel-bot' });
    // Same-origin redirects are followed, each hop signed.
    const moved = await s.fetch(`${api.url}/moved`);
    assert.equal(moved.status, 200);
    assert.equal((await moved.json()).agent, 'travel-bot');
    await s.close();
  });

  await t.test('a missing scope: 403 insufficient_scope with the right WWW-Authenticate', async () => {
    const s = await enroll(broker, api, 'search-bot', 'travel:search');
    const r = await s.fetch(`${api.url}/bookings`, { method: 'POST', body: '{}' });
    assert.equal(r.status, 403);
    const www = r.headers.get('www-authenticate');
    assert.match(www, /^DPoP /);
    assert.match(www, /error="insufficient_scope"/);
    assert.match(www, /scope="travel:book"/);
    assert.equal((await r.json()).error, 'insufficient_scope');
    await s.close();
  });

  await t.test('a limit: an amount under it passes, one over it is 403', async () => {
    const s = await enroll(broker, api, 'pay-bot', 'payment:execute:under-100');
    const pay = (amount) =>
      s.fetch(`${api.url}/pay`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ amount }),
      });
    const ok = await pay('99.99');
    assert.equal(ok.status, 200);
    const over = await pay('100');
    assert.equal(over.status, 403);
    assert.match(over.headers.get('www-authenticate'), /insufficient_scope/);
    const missing = await s.fetch(`${api.url}/pay`, { method: 'POST' });
    assert.equal(missing.status, 400);
    await s.close();
  });

  await t.test('no token: 401 with a DPoP challenge', async () => {
    const r = await fetch(`${api.url}/trips`);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate'), /^DPoP /);
  });

  await t.test('a replayed proof and a proof for another URL are refused', async () => {
    const s = await enroll(broker, api, 'replay-bot', 'travel:search');
    const h = s.headers('GET', `${api.url}/trips`);
    assert.equal((await fetch(`${api.url}/trips`, { headers: h })).status, 200);
    const replay = await fetch(`${api.url}/trips`, { headers: h });
    assert.equal(replay.status, 401);
    assert.match(replay.headers.get('www-authenticate'), /invalid_dpop_proof/);
    const other = await fetch(`${api.url}/whoami`, { headers: s.headers('GET', `${api.url}/trips`) });
    assert.equal(other.status, 401);
    await s.close();
  });

  await t.test('the owner revokes the grant: the running verifier refuses it', async () => {
    const s = await enroll(broker, api, 'revoked-bot', 'travel:search');
    const who = await (await s.fetch(`${api.url}/whoami`)).json();
    await broker.cli('revoke', who.grantId);
    const refused = await eventually(async () => {
      const v = await api.verifier.check({ method: 'GET', url: `${api.url}/trips`, headers: Object.entries(s.headers('GET', `${api.url}/trips`)) });
      return v.rejection;
    });
    assert.ok(refused, 'the verifier still accepts a revoked grant');
    assert.equal(refused.code, 'invalid_token');
    assert.equal(refused.reason, 'revoked');
    assert.equal(refused.status, 401);
    // The session cannot renew a revoked grant either: a real failure, with its code.
    const err = await s.renew().catch((e) => e);
    assert.ok(err instanceof ProtonPassError, String(err));
    assert.equal(err.code, 'invalid_grant');
  });

  await t.test('a revoked access token is renewed transparently by fetch', async () => {
    const s = await enroll(broker, api, 'renew-bot', 'travel:search');
    const who = await (await s.fetch(`${api.url}/whoami`)).json();
    await broker.cli('revoke', who.tokenId);
    await eventually(async () => {
      const v = await api.verifier.check({ method: 'GET', url: `${api.url}/whoami`, headers: Object.entries(s.headers('GET', `${api.url}/whoami`)) });
      return v.rejection;
    });
    const r = await s.fetch(`${api.url}/whoami`);
    assert.equal(r.status, 200);
    const again = await r.json();
    assert.notEqual(again.tokenId, who.tokenId);
    assert.equal(again.grantId, who.grantId);
    await s.close();
  });

  await t.test('renew() gets a new token for the same grant', async () => {
    const s = await enroll(broker, api, 'renew2-bot', 'travel:search');
    const before = await (await s.fetch(`${api.url}/whoami`)).json();
    await s.renew();
    const after = await (await s.fetch(`${api.url}/whoami`)).json();
    assert.notEqual(after.tokenId, before.tokenId);
    assert.equal(after.grantId, before.grantId);
    await s.close();
  });

  await t.test('close() revokes: the verifier then refuses the token', async () => {
    const s = await enroll(broker, api, 'close-bot', 'travel:search');
    assert.equal((await s.fetch(`${api.url}/trips`)).status, 200);
    const h = () => Object.entries(s.headers('GET', `${api.url}/trips`));
    const pending = h();
    await s.close();
    const refused = await eventually(async () => {
      const v = await api.verifier.check({ method: 'GET', url: `${api.url}/trips`, headers: pending });
      return v.rejection;
    });
    assert.equal(refused.code, 'invalid_token');
    assert.equal(refused.reason, 'revoked');
    // A closed session signs nothing more.
    assert.throws(() => s.headers('GET', `${api.url}/trips`), (e) => e instanceof ProtonPassError && e.code === 'invalid_grant');
  });

  await t.test('Symbol.asyncDispose revokes (what `await using` calls)', async () => {
    const s = await enroll(broker, api, 'dispose-bot', 'travel:search');
    const pending = Object.entries(s.headers('GET', `${api.url}/trips`));
    await s[Symbol.asyncDispose]();
    assert.equal(s.closed, true);
    const refused = await eventually(async () => (await api.verifier.check({ method: 'GET', url: `${api.url}/trips`, headers: pending })).rejection);
    assert.equal(refused?.reason, 'revoked');
  });

  await t.test('verify() throws a VerificationError with what to answer', async () => {
    const err = await api.verifier
      .verify({ method: 'GET', url: `${api.url}/trips`, headers: { authorization: 'Bearer abc' } })
      .catch((e) => e);
    assert.ok(err instanceof VerificationError, String(err));
    assert.equal(err.status, 401);
    assert.match(err.wwwAuthenticate, /^DPoP /);
    const s = await enroll(broker, api, 'verify-bot', 'travel:search');
    const headers = new Headers(s.headers('GET', `${api.url}/trips`));
    const id = await api.verifier.verify({ method: 'GET', url: `${api.url}/trips`, headers }, { scope: 'travel:search' });
    assert.equal(id.agent, 'verify-bot');
    assert.deepEqual(id.scopes, ['travel:search']);
    assert.equal(id.jkt, s.thumbprint);
    await s.close();
  });
});

test('a nonce challenge from the API is answered transparently', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startApi(broker.url, { verifier: { requireNonce: true } });
  t.after(() => api.close());
  const s = await enroll(broker, api, 'nonce-bot', 'travel:search');
  // Without the nonce, the API answers 401 use_dpop_nonce and a DPoP-Nonce.
  const raw = await fetch(`${api.url}/trips`, { headers: s.headers('GET', `${api.url}/trips`) });
  assert.equal(raw.status, 401);
  assert.match(raw.headers.get('www-authenticate'), /use_dpop_nonce/);
  assert.ok(raw.headers.get('dpop-nonce'));
  // fetch retries once with the nonce.
  const r = await s.fetch(`${api.url}/trips`);
  assert.equal(r.status, 200);
  await s.close();
});

test('the standalone requireScope needs a verifier', () => {
  assert.throws(() => requireScope('travel:book'), (e) => e.code === 'invalid_request');
  assert.throws(() => new Verifier({ issuer: 'http://x', audience: 'y', maxStaleness: -1 }), (e) => e instanceof ProtonPassError && e.code === 'invalid_request');
});

test('background renewal keeps a short-lived session usable', async (t) => {
  const broker = await startBroker(['--access-ttl', '4']);
  t.after(() => broker.stop());
  const api = await startApi(broker.url);
  t.after(() => api.close());
  const s = await enroll(broker, api, 'short-bot', 'travel:search', { ttl: 4 });
  const first = await (await s.fetch(`${api.url}/whoami`)).json();
  const firstExpiry = s.expiresAt;
  assert.ok(firstExpiry - Date.now() / 1000 <= 5, `the broker gave a longer lifetime: ${firstExpiry}`);
  // Past two lifetimes, the session has renewed on its own.
  const renewed = await eventually(async () => s.expiresAt > firstExpiry, 15000);
  assert.ok(renewed, 'the session did not renew in the background');
  const r = await s.fetch(`${api.url}/whoami`);
  assert.equal(r.status, 200);
  const later = await r.json();
  assert.notEqual(later.tokenId, first.tokenId);
  assert.equal(later.grantId, first.grantId);
  await s.close();
});

test('one session, two APIs: a token per audience', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const a = await startApi(broker.url);
  t.after(() => a.close());
  const b = await startApi(broker.url);
  t.after(() => b.close());
  const g = await broker.cliJson(
    'grant', 'create', '--agent', 'multi-bot', '--scope', 'travel:search', '--audience', a.url, '--audience', b.url,
  );
  const s = await authenticateWithProton({
    broker: broker.url, audience: a.url, store: 'memory', agentName: 'multi-bot',
    scope: ['travel:search'], enrollmentCode: g.enrollment_code, revokeOnExit: false,
  });
  assert.deepEqual(await s.addAudience(b.url), ['travel:search']);
  assert.deepEqual([...s.audiences].sort(), [a.url, b.url].sort());
  const ra = await (await s.fetch(`${a.url}/whoami`)).json();
  const rb = await (await s.fetch(`${b.url}/whoami`)).json();
  assert.notEqual(ra.tokenId, rb.tokenId);
  // Each token names its own API.
  const idA = await a.verifier.verify({ method: 'GET', url: `${a.url}/whoami`, headers: s.headers('GET', `${a.url}/whoami`) });
  const idB = await b.verifier.verify({ method: 'GET', url: `${b.url}/whoami`, headers: s.headers('GET', `${b.url}/whoami`) });
  assert.notEqual(idA.tokenId, idB.tokenId);
  assert.equal(idA.grantId, idB.grantId);
  await s.close();
});
