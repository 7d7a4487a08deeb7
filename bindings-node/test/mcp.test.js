'use strict';
// protonpass-agent/mcp without the MCP SDK (tests/mcp runs the real SDK): the
// middleware's answers, the caller it hands on as the SDK's authInfo, and
// requireScope's refusals as tool results, against the real broker.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { authenticateWithProton, scopeRefusal, ProtonPassError } = require('protonpass-agent');
const { protect, requireScope, agentOf } = require('protonpass-agent/mcp');
const { startBroker } = require('./helpers/broker.js');

const book = requireScope('travel:book', async (args, extra) => ({ content: [{ type: 'text', text: `${agentOf(extra).agent} booked ${args.flight}` }] }));
const pay = requireScope('payment:execute', async (args) => ({ content: [{ type: 'text', text: `paid ${args.amount}` }] }), { amount: 'amount' });

/** A server standing for the MCP app: it calls the tools with `extra.authInfo = req.auth`, as the SDK does. */
async function startServer(broker, options = {}) {
  const holder = {};
  const server = http.createServer((req, res) => holder.handle(req, res));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const resource = `http://127.0.0.1:${server.address().port}/mcp`;
  const guard = protect({ issuer: broker.url, resource, scopesSupported: ['travel:book'], ...options });
  holder.handle = (req, res) =>
    guard(req, res, async () => {
      const extra = { authInfo: req.auth };
      const amount = Number(new URL(req.url, resource).searchParams.get('amount') || 0);
      const results = [await book({ flight: 'TP 1234' }, extra), await pay({ amount }, extra)];
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(results));
    });
  return { resource, close: () => { guard.verifier.stop(); server.close(); } };
}

async function enroll(broker, resource, agent, scope) {
  const g = await broker.cliJson('grant', 'create', '--agent', agent, '--scope', scope, '--audience', resource);
  return authenticateWithProton({ broker: broker.url, audience: resource, store: 'memory', agentName: agent, scope: scope.split(' '), enrollmentCode: g.enrollment_code, revokeOnExit: false });
}

test('protonpass-agent/mcp', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const srv = await startServer(broker);
  t.after(() => srv.close());

  await t.test('an unauthenticated request is challenged and the metadata names the broker', async () => {
    const r = await fetch(srv.resource, { method: 'POST' });
    assert.equal(r.status, 401);
    const link = srv.resource.replace(/\/mcp$/, '/.well-known/oauth-protected-resource/mcp');
    assert.match(r.headers.get('www-authenticate'), /^DPoP /);
    assert.ok(r.headers.get('www-authenticate').includes(`resource_metadata="${link}"`));
    const meta = await (await fetch(link)).json();
    assert.equal(meta.resource, srv.resource);
    assert.deepEqual(meta.authorization_servers, [broker.url]);
    assert.deepEqual(meta.scopes_supported, ['travel:book']);
    assert.equal(meta.dpop_bound_access_tokens_required, true);
  });

  await t.test('tools see the caller, and refuse what its token lacks with insufficient_scope', async () => {
    const s = await enroll(broker, srv.resource, 'mcp-node-a', 'travel:book payment:execute:under-100');
    let [booked, paid] = await (await s.fetch(`${srv.resource}?amount=50`, { method: 'POST' })).json();
    assert.equal(booked.content[0].text, 'mcp-node-a booked TP 1234');
    assert.equal(paid.content[0].text, 'paid 50');
    [, paid] = await (await s.fetch(`${srv.resource}?amount=150`, { method: 'POST' })).json();
    assert.equal(paid.isError, true);
    assert.match(paid.content[0].text, /^insufficient_scope: /);
    await s.close();
    const only = await enroll(broker, srv.resource, 'mcp-node-b', 'travel:search');
    [booked] = await (await only.fetch(srv.resource, { method: 'POST' })).json();
    assert.equal(booked.isError, true);
    assert.match(booked.content[0].text, /^insufficient_scope: .*travel:book/);
    await only.close();
  });

  await t.test('a scope every request needs is a 403', async () => {
    const strict = await startServer(broker, { scope: 'travel:admin' });
    try {
      const s = await enroll(broker, strict.resource, 'mcp-node-c', 'travel:book');
      const r = await s.fetch(strict.resource, { method: 'POST' });
      assert.equal(r.status, 403);
      assert.equal((await r.json()).error, 'insufficient_scope');
      await s.close();
    } finally {
      strict.close();
    }
  });

  await t.test('a tool call nobody verified is refused, and scopeRefusal is the core check', async () => {
    const r = await book({ flight: 'X' }, {});
    assert.equal(r.isError, true);
    assert.match(r.content[0].text, /^invalid_token: /);
    assert.equal(scopeRefusal(['payment:execute:under-100'], 'payment:execute', '99.99'), null);
    assert.match(scopeRefusal(['payment:execute:under-100'], 'payment:execute', 100), /payment:execute/);
    assert.throws(() => scopeRefusal(['travel:book'], 'not a scope'), ProtonPassError);
  });
});
