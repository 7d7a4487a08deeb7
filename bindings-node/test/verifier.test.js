'use strict';
// The verifier as owners rely on it: usage reports to the broker's audit
// (allowed and refused requests, with codes), one owner per API, and DPoP
// `htu` checked against the configured public URL, never the Host header.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { authenticateWithProton, Verifier, ProtonPassError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');
const { startApi } = require('./helpers/api.js');

let n = 0;

async function enroll(broker, api, owner) {
  const agent = `${owner}-node-bot-${n++}`;
  const g = await broker.cliJson('--owner', owner, 'grant', 'create', '--agent', agent, '--scope', 'travel:search', '--audience', api.url);
  return authenticateWithProton({
    broker: broker.url,
    audience: api.url,
    store: 'memory',
    agentName: agent,
    scope: ['travel:search'],
    enrollmentCode: g.enrollment_code,
    revokeOnExit: false,
  });
}

/**
 * A broker with the owner ada, the test API, and ada's agent session on it.
 * Everything opened, with what the test adds through `closeLater`, is closed
 * after test `t`, the last opened first.
 */
async function adaOnApi(t) {
  const closers = [];
  t.after(async () => {
    for (const close of closers.reverse()) await close();
  });
  const closeLater = (close) => closers.push(close);
  const broker = await startBroker();
  closeLater(() => broker.stop());
  await broker.cli('owner', 'add', 'ada');
  const api = await startApi(broker.url);
  closeLater(() => api.close());
  const session = await enroll(broker, api, 'ada');
  closeLater(() => session.close());
  return { broker, api, session, closeLater };
}

/** A request over node:http, so that the Host header is the test's choice. */
function request(api, method, path, headers = {}) {
  const { port } = new URL(api.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: body ? JSON.parse(body) : null }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The `usage` records of resource `clientId` once there are `count` (reports are batched). */
async function usage(broker, clientId, count) {
  const end = Date.now() + 20000;
  for (;;) {
    const out = await broker.cli('audit', 'export', '--json');
    const recs = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .filter((r) => r.event === 'usage')
      .map((r) => ({ owner: r.owner, ...JSON.parse(r.detail) }))
      .filter((d) => d.resource === clientId);
    if (recs.length >= count || Date.now() > end) return recs;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('the Express verifier and the broker audit', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  // The API's audience is its own URL; register it for the default owner.
  const api = await startApi(broker.url, { verifier: { owner: 'default' } });
  t.after(() => api.close());
  // Bob's agent is granted the audience before its owner registers it: from
  // then on no other owner can be granted it, but bob's token exists.
  await broker.cli('owner', 'add', 'bob');
  const bob = await enroll(broker, api, 'bob');
  const rs = await broker.cliJson('resource', 'add', api.url);
  // A second API of the same owner reports its uses with those credentials;
  // its audience is its own URL (a session sends its token only there).
  const reporting = await startApi(broker.url, {
    verifier: { owner: 'default', usageReports: { clientId: rs.client_id, clientSecret: rs.client_secret } },
  });
  t.after(() => reporting.close());

  await t.test('allowed and refused calls reach the owner\'s audit', async () => {
    const s = await enroll(broker, reporting, 'default');
    const trips = `${reporting.url}/trips`;
    const h = s.headers('GET', trips, 'find a train');
    assert.equal((await request(reporting, 'GET', '/trips', h)).status, 200);
    // Refused by the middleware after verification: the scope is missing.
    const b = await request(reporting, 'POST', '/bookings', s.headers('POST', `${reporting.url}/bookings`));
    assert.equal(b.status, 403);
    assert.equal(b.body.error, 'insufficient_scope');
    // Refused by the verifier: the same proof twice.
    const again = await request(reporting, 'GET', '/trips', h);
    assert.equal(again.status, 401);
    assert.equal(again.body.error, 'invalid_dpop_proof');
    // Refused without a token: reported, unattributed.
    assert.equal((await request(reporting, 'GET', '/trips')).status, 401);
    const recs = await usage(broker, rs.client_id, 4);
    assert.equal(recs.length, 4, JSON.stringify(recs));
    assert.ok(recs.every((r) => r.owner === 'default'));
    const find = (decision, code) => recs.find((r) => r.decision === decision && (r.code ?? null) === code);
    const allowed = find('allow', null);
    assert.equal(allowed.reason, 'find a train');
    assert.match(allowed.agent, /^default-node-bot-/);
    const scope = find('deny', 'insufficient_scope');
    assert.equal(scope.scope, 'travel:book');
    assert.equal(scope.agent, allowed.agent);
    const replay = find('deny', 'invalid_dpop_proof');
    assert.equal(replay.reason, 'replay');
    assert.equal(replay.jti, allowed.jti);
    const anonymous = find('deny', 'invalid_token');
    assert.equal(anonymous.jti, null);
    assert.equal(anonymous.agent, null);
    await s.close();
  });

  await t.test('another owner\'s token is refused, the owner is handed to the route', async () => {
    const mine = await enroll(broker, api, 'default');
    const r = await request(api, 'GET', '/trips', bob.headers('GET', `${api.url}/trips`));
    assert.equal(r.status, 401);
    assert.equal(r.body.error, 'invalid_token');
    assert.match(r.body.error_description, /\(owner\)/);
    const ok = await request(api, 'GET', '/trips', mine.headers('GET', `${api.url}/trips`));
    assert.equal(ok.status, 200);
    assert.equal(ok.body.owner, 'default');
    await bob.close();
    await mine.close();
  });

  await t.test('htu is checked against baseUrl, not the Host header', async () => {
    const s = await enroll(broker, api, 'default');
    const evil = await request(api, 'GET', '/trips', { ...s.headers('GET', `${api.url}/elsewhere/trips`), host: 'evil.example' });
    assert.equal(evil.status, 401);
    assert.equal(evil.body.error, 'invalid_dpop_proof');
    assert.match(evil.body.error_description, /\(htu\)/);
    const ok = await request(api, 'GET', '/trips', { ...s.headers('GET', `${api.url}/trips`), host: 'evil.example' });
    assert.equal(ok.status, 200);
    await s.close();
  });

  await t.test('the middleware needs a baseUrl', () => {
    const v = new Verifier({ issuer: broker.url, audience: api.url });
    assert.ok(v.baseUrl == null);
    assert.throws(() => v.requireScope('travel:search'), (e) => e instanceof ProtonPassError && e.code === 'invalid_request' && /baseUrl/.test(e.message));
    assert.throws(() => new Verifier({ issuer: broker.url, audience: api.url, baseUrl: 'api.example' }), (e) => e instanceof ProtonPassError && e.code === 'invalid_request');
    assert.equal(new Verifier({ issuer: broker.url, audience: api.url, baseUrl: 'https://api.example/' }).baseUrl, 'https://api.example');
  });
});

test('a verifier connects on its first request, then answers each one at once', async (t) => {
  const { broker, api, session, closeLater } = await adaOnApi(t);
  const url = `${api.url}/trips`;
  // No ready(): the first request waits for the broker's keys and revocations.
  const verifier = new Verifier({ issuer: broker.url, audience: api.url });
  closeLater(() => verifier.stop());
  const first = await verifier.verify({ method: 'GET', url, headers: session.headers('GET', url) }, { scope: 'travel:search' });
  assert.equal(first.owner, 'ada');
  // Every header shape verify and check take: Headers, a plain object, pairs, rawHeaders.
  const shapes = [
    (h) => new Headers(h),
    (h) => ({ ...h, 'X-Extra': ['a', 'b'] }),
    (h) => Object.entries(h),
    (h) => Object.entries(h).flat(),
  ];
  for (const shape of shapes) {
    const verdict = await verifier.check({ method: 'GET', url, headers: shape(session.headers('GET', url)) });
    assert.equal(verdict.identity?.owner, 'ada');
  }
  // A proof is good once.
  const headers = session.headers('GET', url);
  await verifier.verify({ method: 'GET', url, headers });
  await assert.rejects(
    verifier.verify({ method: 'GET', url, headers }),
    (e) => e.name === 'VerificationError' && e.code === 'invalid_dpop_proof' && e.reason === 'replay' && e.status === 401,
  );
  // A scope the token lacks, with an amount.
  const refused = await verifier.check({ method: 'GET', url, headers: session.headers('GET', url) }, { scope: 'payment:execute', amount: '5' });
  assert.equal(refused.rejection?.code, 'insufficient_scope');
  assert.equal(refused.rejection?.status, 403);
  // A requirement without a scope is an error, never "no requirement".
  for (const requirement of [{ amount: '5' }, { scope: 7 }, 'travel:search']) {
    await assert.rejects(
      verifier.check({ method: 'GET', url, headers: session.headers('GET', url) }, requirement),
      (e) => e instanceof ProtonPassError && e.code === 'invalid_request',
    );
  }
  await assert.rejects(verifier.check(null), (e) => e instanceof ProtonPassError && e.code === 'invalid_request');
  await assert.rejects(
    verifier.check({ method: 'GET', url, headers: [1, 2] }),
    (e) => e instanceof ProtonPassError && e.code === 'invalid_request',
  );
});

test('a verdict still pending is never taken for a verdict when global.Promise is replaced', async (t) => {
  const { broker, api, session, closeLater } = await adaOnApi(t);
  const RealPromise = global.Promise;
  let verifier;
  closeLater(() => verifier?.stop());
  // No ready(): the first checks need the network, so the addon answers with
  // a promise, which is native whatever `global.Promise` now is.
  let guard;
  const reached = [];
  const server = http.createServer((req, res) => {
    guard(req, res, () => {
      reached.push(req.agent);
      res.end('handler');
    });
  });
  closeLater(() => server.close());
  await new RealPromise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  // The public URL agents sign for is the API's; this server stands in front of it.
  verifier = new Verifier({ issuer: broker.url, audience: api.url, baseUrl: api.url });
  guard = verifier.requireScope('travel:search');
  const send = (headers) => new RealPromise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/trips', headers }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  });
  closeLater(() => {
    global.Promise = RealPromise;
  });
  global.Promise = class extends RealPromise {};
  // A token of an unknown key, and a proof that is no proof.
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const forged = `${b64({ alg: 'EdDSA', typ: 'at+jwt', kid: 'unknown' })}.${b64({ sub: 'x' })}.AAAA`;
  const refused = await send({ Authorization: `DPoP ${forged}`, DPoP: forged });
  assert.equal(refused.status, 401, refused.body);
  assert.deepEqual(reached, []);
  const allowed = await send(session.headers('GET', `${api.url}/trips`));
  assert.equal(allowed.status, 200, allowed.body);
  assert.equal(reached.length, 1);
  assert.equal(reached[0].owner, 'ada');
});
