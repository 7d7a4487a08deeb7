// A resource server protected by the Node package's Verifier (node:http, no
// framework): GET /whoami needs travel:search. Usage:
//   node node_verifier.mjs --issuer URL [--audience URL]
// The audience defaults to the server's own URL. First stdout line:
// {"event":"listening","url":...,"audience":...}.
import http from 'node:http';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const { Verifier } = require(require('../../examples/travel/node-package.cjs'));
const { values: opt } = parseArgs({ options: { issuer: { type: 'string' }, audience: { type: 'string' } } });

let verifier;
const server = http.createServer(async (req, res) => {
  const url = `http://${req.headers.host}${req.url}`;
  if (new URL(url).pathname !== '/whoami') {
    res.writeHead(404).end();
    return;
  }
  const { identity, rejection } = await verifier.check(
    { method: req.method, url, headers: Object.entries(req.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]])) },
    { scope: 'travel:search' },
  );
  if (rejection) {
    const headers = { 'content-type': 'application/json' };
    if (rejection.wwwAuthenticate) headers['www-authenticate'] = rejection.wwwAuthenticate;
    if (rejection.dpopNonce) headers['dpop-nonce'] = rejection.dpopNonce;
    res.writeHead(rejection.status, headers).end(rejection.body);
    return;
  }
  const { owner, agent, scopes, tokenId, grantId } = identity;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ verifier: 'node', owner, agent, scopes: scopes.join(' '), token_id: tokenId, grant_id: grantId }));
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}`;
const audience = opt.audience || url;
verifier = new Verifier({ issuer: opt.issuer, audience });
await verifier.ready();
console.log(JSON.stringify({ event: 'listening', url, audience }));
const stop = () => {
  verifier.stop();
  server.close();
  server.closeAllConnections?.();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
