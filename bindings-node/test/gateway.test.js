'use strict';
// Agents through the broker's credential-injecting gateway: the installed
// package, the real broker, and a real local upstream API that accepts only
// the owner's key and records what it received. The agent's code names the
// upstream's real URL (`https://api.code-host.example/...`, a host that does
// not resolve): the session sends it to the gateway, which injects the key.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { authenticateWithProton, ProtonPassError } = require('protonpass-agent');
const { createProtonPassTool } = require('protonpass-agent/langchain');
const { startBroker } = require('./helpers/broker.js');

const AUD = 'https://api.code-host.example';
const SECRET = 'ghp_node-gateway-secret-51c2';
const NAME = 'node-code-host';

/** A local API that answers only `X-Api-Key: <SECRET>`; records every request. */
async function startUpstream() {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method, target: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const ok = req.headers['x-api-key'] === SECRET;
      res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok, path: req.url }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, seen, close: () => new Promise((r) => server.close(r)) };
}

/** `upstream add FILE --secret-stdin --json`, the secret on standard input. */
function addUpstream(broker, port) {
  const file = path.join(broker.data, 'code-host.toml');
  fs.writeFileSync(
    file,
    `name = "${NAME}"\nbase_url = "http://127.0.0.1:${port}"\naudience = "${AUD}"\nallow_private_network = true\n` +
      'credential = { header = "X-Api-Key", value = "{secret}" }\n' +
      '[[rule]]\nmethods = ["GET"]\npath = "/repos/{owner}/{repo}/**"\nscope = "repo:read:{repo}"\n' +
      '[[rule]]\nmethods = ["POST"]\npath = "/repos/{owner}/{repo}/issues"\nscope = "repo:write:{repo}"\n',
  );
  return new Promise((resolve, reject) => {
    const c = spawn(broker.bin, ['--data', broker.data, '--json', 'upstream', 'add', file, '--secret-stdin']);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`upstream add: ${code}`))));
    c.stdin.end(`${SECRET}\n`);
  });
}

function assertInjected(up, target, method = 'GET') {
  const last = up.seen.at(-1);
  assert.deepEqual([last.method, last.target], [method, target]);
  assert.equal(last.headers['x-api-key'], SECRET);
  for (const h of ['authorization', 'dpop', 'cookie']) assert.equal(last.headers[h], undefined, h);
}

test('session.fetch and the LangChain tool reach an upstream by its real URLs', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const up = await startUpstream();
  t.after(() => up.close());
  const added = await addUpstream(broker, up.port);
  const gateway = `${broker.url}/gateway/${NAME}`;
  assert.equal(added.gateway_url, gateway);

  const meta = await (await fetch(`${broker.url}/.well-known/oauth-authorization-server`)).json();
  assert.deepEqual(meta.protonpass_gateways, [{ audience: AUD, gateway_url: gateway }]);

  const g = await broker.cliJson('grant', 'create', '--agent', 'gw-bot', '--scope', 'repo:read:proj', '--audience', AUD);
  const session = await authenticateWithProton({
    broker: broker.url, audience: AUD, store: 'memory', agentName: 'gw-bot',
    scope: ['repo:read:proj'], enrollmentCode: g.enrollment_code, revokeOnExit: false,
  });

  const real = `${AUD}/repos/me/proj/commits?per_page=2`;
  assert.equal(session.route(real), `${gateway}/repos/me/proj/commits?per_page=2`);
  const r = await session.fetch(real, { reason: 'list commits' });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { ok: true, path: '/repos/me/proj/commits?per_page=2' });
  assertInjected(up, '/repos/me/proj/commits?per_page=2');

  // The rules and the scopes hold: refused by the gateway, upstream untouched.
  const before = up.seen.length;
  assert.equal((await session.fetch(`${AUD}/repos/me/other`)).status, 403);
  assert.equal((await session.fetch(`${AUD}/repos/me/proj/issues`, { method: 'POST', body: '{}' })).status, 403);
  assert.equal((await session.fetch(`${AUD}/repos/me/proj-evil/x`)).status, 403);
  // Outside the audience: neither rewritten nor signed, nothing sent.
  for (const url of ['https://api.code-host.example.evil.com/repos/me/proj', 'https://evil.example/repos/me/proj']) {
    assert.equal(session.route(url), url);
    await assert.rejects(session.fetch(url), (e) => e instanceof ProtonPassError && e.code === 'invalid_request');
  }
  // The upstream itself never gets the token: headers need the routed URL.
  assert.throws(() => session.headers('GET', `${AUD}/repos/me/proj`), (e) => e.code === 'invalid_request');
  assert.ok(session.headers('GET', session.route(`${AUD}/repos/me/proj`)).DPoP);
  assert.equal(up.seen.length, before);

  // The LangChain.js tool, written for the upstream's URL.
  const tool = createProtonPassTool(session, { baseUrl: AUD });
  const out = String(await tool.invoke({ method: 'GET', path: '/repos/me/proj/readme', reason: 'read it' }));
  assert.match(out, /^HTTP 200\n/);
  assertInjected(up, '/repos/me/proj/readme');
  const denied = String(await tool.invoke({ method: 'GET', path: '/repos/me/private' }));
  assert.match(denied, /^HTTP 403\n/);
  assert.ok(!denied.includes(SECRET));
  await session.close();
});
