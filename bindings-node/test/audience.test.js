'use strict';
// A session sends its token and proofs only to URLs under its audiences:
// same scheme, host and port, and a path under the audience's path. Anything
// else is refused before a byte is sent, by session.headers and session.fetch.
const test = require('node:test');
const assert = require('node:assert/strict');
const { authenticateWithProton, ProtonPassError } = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');
const { startRecorder } = require('./helpers/recorder.js');

test('the token goes only to URLs under the audience', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startRecorder();
  t.after(() => api.close());
  const trap = await startRecorder();
  t.after(() => trap.close());
  const audience = `${api.url}/api`;
  const g = await broker.cliJson('grant', 'create', '--agent', 'aud-bot', '--scope', 'travel:search', '--audience', audience);
  const s = await authenticateWithProton({
    broker: broker.url, audience, store: 'memory', agentName: 'aud-bot',
    scope: ['travel:search'], enrollmentCode: g.enrollment_code, revokeOnExit: false,
  });
  const token = s.headers('GET', `${audience}/trips`).Authorization.slice('DPoP '.length);
  const hostPort = api.url.slice('http://'.length);
  const elsewhere = [
    `${trap.url}/api/trips`,
    `http://localhost:${api.url.split(':').at(-1)}/api/trips`,
    `https://${hostPort}/api/trips`,
    `http://${hostPort}@${trap.url.slice('http://'.length)}/api/trips`,
    `${api.url}/admin`,
    `${api.url}/apix`,
    `${api.url}/api/../admin`,
    `${api.url}/api/%2e%2e/admin`,
    `${api.url}/api/..%2fadmin`,
    `${api.url}/api/..%5Cadmin`,
  ];
  for (const url of elsewhere) {
    assert.throws(() => s.headers('GET', url), (e) => {
      assert.ok(e instanceof ProtonPassError, String(e));
      assert.equal(e.code, 'invalid_request');
      assert.ok(e.message.includes(audience), e.message);
      assert.ok(!e.message.includes(token) && !e.message.includes('admin'), e.message);
      return true;
    }, url);
    // (fetch's own Request refuses URLs with credentials first: a TypeError.)
    const refused = (e) => (e instanceof ProtonPassError && e.code === 'invalid_request') || (url.includes('@') && e instanceof TypeError);
    await assert.rejects(s.fetch(url), refused, url);
  }
  assert.deepEqual(api.seen, [], 'a refused request reached the API');
  assert.deepEqual(trap.seen, [], 'a refused request reached another server');

  // Under the audience, the request goes with its credentials.
  const ok = await s.fetch(`${audience}/trips?x=1`);
  assert.equal(ok.status, 200);
  assert.equal(api.seen.length, 1);
  assert.equal(api.seen[0].path, '/api/trips?x=1');
  assert.ok(api.seen[0].authorization.startsWith('DPoP ') && api.seen[0].dpop);

  // A redirect out of the audience's path is handed back, not followed.
  const moved = await s.fetch(`${audience}/redirect-to/admin`);
  assert.equal(moved.status, 302);
  assert.equal(moved.headers.get('location'), '/admin');
  assert.deepEqual(api.seen.map((r) => r.path), ['/api/trips?x=1', '/api/redirect-to/admin']);
  // One under it is followed, signed again.
  const inside = await s.fetch(`${audience}/redirect-to/api/trips`);
  assert.equal(inside.status, 200);
  assert.equal(api.seen.at(-1).path, '/api/trips');
  assert.ok(api.seen.at(-1).authorization.startsWith('DPoP '));
  await s.close();
});
