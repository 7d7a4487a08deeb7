'use strict';
// protonpass-agent/mcp's acceptBearer: an MCP client without DPoP gets a
// bearer token from the real broker (authorization code + PKCE, the owner's
// consent on the dashboard, the resource opened to bearer tokens by its
// owner) and reaches a server protected with `acceptBearer: true`; the same
// server without the option refuses it.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { createHash, randomBytes } = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { protect, requireScope, agentOf } = require('protonpass-agent/mcp');
const { startBroker } = require('./helpers/broker.js');

const PASSWORD = 'correct horse battery staple 19';
const CB = 'http://127.0.0.1:1/callback';

const book = requireScope('travel:book', async (args, extra) => ({ content: [{ type: 'text', text: `${agentOf(extra).agent} booked ${args.flight}` }] }));

function hidden(html, name) {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  assert.ok(m, `no ${name} in ${html.slice(0, 2000)}`);
  return m[1].replaceAll('&amp;', '&').replaceAll('&quot;', '"');
}

/** The owner's browser: cookies kept, redirects not followed. */
function browser(base) {
  const jar = new Map();
  return async (path, init = {}) => {
    const headers = { ...(init.headers || {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
    const r = await fetch(base + path, { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return { status: r.status, location: r.headers.get('location') || '', text: await r.text() };
  };
}

const form = (pairs) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(pairs).toString(),
});

test('protect({ acceptBearer: true }) takes the bearer tokens the broker gives clients without DPoP', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  execFileSync(broker.bin, ['--data', broker.data, 'owner', 'add', 'default', '--password-stdin'], { input: `${PASSWORD}\n`, timeout: 30000 });

  // One MCP endpoint, protected with and without the option.
  const holder = {};
  const server = http.createServer((req, res) => holder.guard(req, res, async () => {
    const result = await book({ flight: 'TP 1234' }, { authInfo: req.auth });
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(result));
  }));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const resource = `http://127.0.0.1:${server.address().port}/mcp`;
  const on = protect({ issuer: broker.url, resource, acceptBearer: true });
  const off = protect({ issuer: broker.url, resource });
  t.after(() => { on.verifier.stop(); off.verifier.stop(); server.close(); });
  assert.throws(() => protect({ issuer: broker.url, resource, acceptBearer: 'yes' }), /acceptBearer/);

  const link = resource.replace(/\/mcp$/, '/.well-known/oauth-protected-resource/mcp');
  holder.guard = on;
  assert.equal((await (await fetch(link)).json()).dpop_bound_access_tokens_required, false);
  holder.guard = off;
  assert.equal((await (await fetch(link)).json()).dpop_bound_access_tokens_required, true);

  await broker.cliJson('resource', 'add', resource, '--owner', 'default');
  await broker.cli('resource', 'bearer', resource, 'on');

  // A client registers (RFC 7591) and the owner approves it.
  const reg = await (await fetch(`${broker.url}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ redirect_uris: [CB], client_name: 'Bearer-only client' }),
  })).json();
  const web = browser(broker.url);
  const login = await web('/login');
  const signed = await web('/login', form({ csrf: hidden(login.text, 'csrf'), owner: 'default', password: PASSWORD, next: '/agents' }));
  assert.equal(signed.status, 303, signed.text);
  const verifier = randomBytes(32).toString('base64url');
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: reg.client_id,
    redirect_uri: CB,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: 's1',
    scope: 'travel:book',
    resource,
  });
  const page = await web(`/oauth/authorize?${q}`);
  assert.equal(page.status, 200, page.text);
  const answer = await web('/oauth/authorize', form([
    ['csrf', hidden(page.text, 'csrf')],
    ['request', hidden(page.text, 'request')],
    ['ttl', '3600'],
    ['action', 'approve'],
    ['scope', 'travel:book'],
  ]));
  assert.equal(answer.status, 303, answer.text);
  const code = new URL(answer.location).searchParams.get('code');
  const tok = await (await fetch(`${broker.url}/oauth/token`, form({
    grant_type: 'authorization_code', code, redirect_uri: CB, client_id: reg.client_id, code_verifier: verifier, resource,
  }))).json();
  assert.equal(tok.token_type, 'Bearer', JSON.stringify(tok));

  const call = () => fetch(resource, { method: 'POST', headers: { authorization: `Bearer ${tok.access_token}` } });
  holder.guard = on;
  const ok = await call();
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).content[0].text, `${reg.client_id} booked TP 1234`);
  holder.guard = off;
  const refused = await call();
  assert.equal(refused.status, 401);
  assert.match(refused.headers.get('www-authenticate'), /invalid_token/);
  assert.ok(refused.headers.get('www-authenticate').includes(`resource_metadata="${link}"`));
});
