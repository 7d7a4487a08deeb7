'use strict';
// RFC 9728 protected-resource metadata: built by the core, served from an
// Express app, announced in the Verifier's 401 challenges.
const test = require('node:test');
const assert = require('node:assert/strict');
const express = require('express');
const {
  authenticateWithProton,
  Verifier,
  ProtonPassError,
  resourceMetadata,
  resourceMetadataPath,
  resourceMetadataUrl,
  serveResourceMetadata,
} = require('protonpass-agent');
const { startBroker } = require('./helpers/broker.js');

test('the document is the core\'s', () => {
  const m = resourceMetadata({
    resource: 'https://api.example/mcp',
    authorizationServer: 'https://auth.example',
    scopesSupported: ['travel:search'],
    resourceDocumentation: 'https://docs.example',
  });
  assert.equal(m.resource, 'https://api.example/mcp');
  assert.deepEqual(m.authorization_servers, ['https://auth.example']);
  assert.deepEqual(m.scopes_supported, ['travel:search']);
  assert.equal(m.dpop_bound_access_tokens_required, true);
  assert.ok(m.dpop_signing_alg_values_supported.includes('EdDSA'));
  assert.equal(m.resource_documentation, 'https://docs.example');
  assert.equal(resourceMetadataPath('https://api.example/mcp'), '/.well-known/oauth-protected-resource/mcp');
  assert.equal(resourceMetadataUrl('http://127.0.0.1:9/'), 'http://127.0.0.1:9/.well-known/oauth-protected-resource');
  for (const bad of ['http://api.example/mcp', 'https://api.example/?q=1', 'nope']) {
    assert.throws(
      () => resourceMetadata({ resource: bad, authorizationServer: 'https://auth.example' }),
      (e) => e instanceof ProtonPassError && e.code === 'invalid_target',
      bad,
    );
  }
});

test('an Express API serves it and points at it', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const app = express();
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  t.after(() => new Promise((r) => server.close(r)));
  const base = `http://127.0.0.1:${server.address().port}`;
  const resource = `${base}/mcp`;
  const verifier = new Verifier({
    issuer: broker.url,
    audience: resource,
    baseUrl: base,
    resourceMetadataUrl: resourceMetadataUrl(resource),
  });
  t.after(() => verifier.stop());
  const path = serveResourceMetadata(app, {
    resource,
    authorizationServer: broker.url,
    scopesSupported: ['travel:search', 'travel:book'],
  });
  assert.equal(path, '/.well-known/oauth-protected-resource/mcp');
  app.get('/mcp', verifier.requireScope('travel:book'), (req, res) => res.json({ ok: true }));
  for (const p of [path, '/.well-known/oauth-protected-resource']) {
    const r = await fetch(`${base}${p}`);
    assert.equal(r.status, 200, p);
    const m = await r.json();
    assert.equal(m.resource, resource);
    assert.deepEqual(m.authorization_servers, [broker.url]);
    assert.deepEqual(m.scopes_supported, ['travel:search', 'travel:book']);
  }
  const r = await fetch(`${base}/mcp`);
  assert.equal(r.status, 401);
  assert.ok(
    r.headers.get('www-authenticate').includes(`resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`),
    r.headers.get('www-authenticate'),
  );

  // An agent that knows only the resource: no broker URL, no scopes.
  const saved = process.env.PROTONPASS_BROKER_URL;
  delete process.env.PROTONPASS_BROKER_URL;
  t.after(() => {
    if (saved !== undefined) process.env.PROTONPASS_BROKER_URL = saved;
  });
  const g = await broker.cliJson('grant', 'create', '--agent', 'mcp-bot', '--scope', 'travel:search travel:book', '--audience', resource);
  const s = await authenticateWithProton({
    resource,
    store: 'memory',
    agentName: 'mcp-bot',
    enrollmentCode: g.enrollment_code,
    revokeOnExit: false,
  });
  assert.deepEqual(s.scopes, ['travel:search', 'travel:book']);
  const ok = await s.fetch(`${base}/mcp`);
  assert.equal(ok.status, 200);
  await s.close();
  await assert.rejects(
    authenticateWithProton({ resource, audience: 'https://other.example', scope: ['travel:book'], store: 'memory' }),
    (e) => e instanceof ProtonPassError && e.code === 'invalid_request',
  );
});
