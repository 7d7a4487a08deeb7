'use strict';
// MCP servers protected by the broker's tokens, for @modelcontextprotocol/sdk's
// Streamable HTTP server behind Express (or Connect, or plain `http`). This
// file imports nothing from the SDK: `protect` is HTTP middleware that hands
// the verified caller to the SDK the way the SDK takes it (`req.auth`, which
// tools receive as `extra.authInfo`), and `requireScope` wraps a tool
// callback. Scope decisions are the core's (`scopeRefusal`).

const {
  ProtonPassError,
  Verifier,
  scopeRefusal,
  resourceMetadataJson,
  resourceMetadataPath,
  resourceMetadataUrl,
} = require('./index.js');

function headerPairs(req) {
  const raw = req.rawHeaders;
  if (Array.isArray(raw)) {
    const out = [];
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
    return out;
  }
  const out = [];
  for (const [k, v] of Object.entries(req.headers || {})) {
    if (Array.isArray(v)) for (const x of v) out.push([k, String(x)]);
    else if (v !== undefined) out.push([k, String(v)]);
  }
  return out;
}

function send(res, status, body, headers) {
  res.statusCode = status;
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'application/json');
  res.end(body);
}

/**
 * Middleware that verifies every request to an MCP server: a valid DPoP-bound
 * token for `resource` and a fresh proof for the URL the client addressed
 * (`baseUrl` plus the path, never the `Host` header). Refusals are answered
 * 401 (403 for `scope`) with the verifier's `WWW-Authenticate` plus the RFC
 * 9728 `resource_metadata` link; the metadata is served, unauthenticated, at
 * `/.well-known/oauth-protected-resource` plus the resource's path. A
 * verified request gets `req.agent` (the identity: owner, agent, grantId,
 * scopes, reason) and `req.auth`, the SDK's `AuthInfo`, which tool callbacks
 * receive as `extra.authInfo` (its `token` is the token id, never the token).
 *
 * `acceptBearer: true` also accepts the bearer tokens the broker issues to MCP
 * clients that cannot do DPoP, for resources whose owner allows them
 * (`protonpass-broker resource bearer URL on`); the metadata then says
 * `dpop_bound_access_tokens_required: false`. A verifier passed in must have
 * been built with `acceptBearer: true` as well (else it refuses bearer tokens).
 */
function protect(options = {}) {
  const { resource, issuer, scope, scopesSupported, resourceDocumentation } = options;
  const acceptBearer = options.acceptBearer === true;
  if (options.acceptBearer !== undefined && typeof options.acceptBearer !== 'boolean') {
    throw new ProtonPassError('invalid_request', 'acceptBearer is true or false');
  }
  if (typeof resource !== 'string' || typeof issuer !== 'string') {
    throw new ProtonPassError('invalid_request', 'protect needs { issuer, resource }: the broker and the MCP endpoint as clients address it, e.g. https://mcp.example/mcp');
  }
  const resourceUrl = new URL(resource);
  // Built by the core (which refuses a resource that is not https, or http on loopback).
  let metadata = resourceMetadataJson({ resource, authorizationServer: issuer, scopesSupported, resourceDocumentation });
  if (acceptBearer) {
    // Bearer tokens are taken too: say so (RFC 9728).
    metadata = JSON.stringify({ ...JSON.parse(metadata), dpop_bound_access_tokens_required: false });
  }
  const metadataPath = resourceMetadataPath(resource);
  const metadataUrl = resourceMetadataUrl(resource);
  const verifier =
    options.verifier ||
    new Verifier({ issuer, audience: resource, baseUrl: options.baseUrl || resourceUrl.origin, owner: options.owner, resourceMetadataUrl: metadataUrl, acceptBearer });
  const baseUrl = verifier.baseUrl;
  if (!baseUrl) {
    throw new ProtonPassError('invalid_request', "the Verifier has no baseUrl: new Verifier({ ..., baseUrl: 'https://mcp.example' }), the public URL clients address this server by");
  }

  const middleware = async function protonpassMcp(req, res, next) {
    const path = (req.originalUrl || req.url).split('?')[0];
    if (path === metadataPath && (req.method === 'GET' || req.method === 'HEAD')) {
      send(res, 200, metadata, { 'Cache-Control': 'max-age=300' });
      return;
    }
    let verdict;
    try {
      verdict = await verifier.check(
        { method: req.method, url: `${baseUrl}${req.originalUrl || req.url}`, headers: headerPairs(req) },
        scope ? { scope } : undefined,
      );
    } catch (e) {
      const status = e && e.code === 'invalid_request' ? 400 : 503;
      const code = status === 400 ? 'invalid_request' : 'temporarily_unavailable';
      send(res, status, JSON.stringify({ error: code, error_description: String(e && e.message) }), { 'Cache-Control': 'no-store' });
      return;
    }
    const r = verdict.rejection;
    if (r) {
      let www = r.wwwAuthenticate || 'DPoP algs="EdDSA"';
      if (!www.includes('resource_metadata=')) www += `, resource_metadata="${metadataUrl}"`;
      const headers = { 'WWW-Authenticate': www, 'Cache-Control': 'no-store' };
      if (r.dpopNonce) headers['DPoP-Nonce'] = r.dpopNonce;
      send(res, r.status, r.body, headers);
      return;
    }
    const id = verdict.identity;
    req.agent = id;
    req.auth = {
      token: id.tokenId,
      clientId: id.agent,
      scopes: id.scopes,
      expiresAt: id.expiresAt,
      resource: resourceUrl,
      extra: { protonpass: id },
    };
    if (typeof next === 'function') next();
  };
  middleware.verifier = verifier;
  return middleware;
}

/** The verified caller of a tool call (`extra` is the SDK's second callback argument), or `undefined`. */
function agentOf(extra) {
  const id = extra && extra.authInfo && extra.authInfo.extra && extra.authInfo.extra.protonpass;
  return id && typeof id === 'object' ? id : undefined;
}

function refused(text) {
  return { content: [{ type: 'text', text }], isError: true };
}

/**
 * Wrap an MCP tool callback so that it runs only for a caller whose token
 * carries `scope`: `server.registerTool('book_flight', config,
 * requireScope('travel:book', async (args, extra) => ...))`. With `{ amount:
 * 'amount' }` (the name of a tool argument), `scope` is a `resource:action`
 * and the token must allow that amount (`payment:execute:under-500` allows
 * 499.99). A refusal is the tool result `{ isError: true }` whose text starts
 * with the error code (`insufficient_scope: ...`), for the model to read.
 */
function requireScope(scope, handler, options = {}) {
  if (typeof scope !== 'string' || typeof handler !== 'function') {
    throw new ProtonPassError('invalid_request', 'requireScope(scope, handler[, { amount }]) takes a scope string and the tool callback');
  }
  const amountArg = options.amount;
  return async function protonpassTool(...params) {
    // The SDK passes (args, extra), or (extra) alone to a tool without input.
    const extra = params[params.length - 1];
    const args = params.length > 1 ? params[0] : {};
    const id = agentOf(extra);
    if (!id) return refused('invalid_token: this call was not verified (protect the MCP endpoint with protonpass-agent/mcp protect)');
    let amount;
    if (amountArg !== undefined) {
      amount = args ? args[amountArg] : undefined;
      if (amount === undefined || amount === null || amount === '') return refused(`invalid_request: the call names no ${amountArg} to check against ${scope}`);
      amount = typeof amount === 'number' ? amount : String(amount);
    }
    let why;
    try {
      why = scopeRefusal(id.scopes, scope, amount);
    } catch (e) {
      return refused(`invalid_request: ${e && e.message}`);
    }
    if (why) return refused(`insufficient_scope: ${why}`);
    return handler(...params);
  };
}

module.exports = { protect, requireScope, agentOf };
