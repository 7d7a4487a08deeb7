'use strict';
// The core's protocol functions (RFC 7638, RFC 8037, RFC 9449) and RFC 9728
// protected-resource metadata, with errors mapped to ProtonPassError.

const native = require('./addon.js');
const { toError, withErrors } = require('./errors.js');

const jwkText = (jwk) => (typeof jwk === 'string' ? jwk : JSON.stringify(jwk));
const jwkThumbprint = withErrors((jwk) => native.jwkThumbprint(jwkText(jwk)));
const verifySignature = withErrors((jwk, alg, message, signature) =>
  native.verifySignature(jwkText(jwk), alg, message, signature));
const verifyEd25519 = withErrors(native.verifyEd25519);
const signEd25519 = withErrors((privateJwk, message) => native.signEd25519(jwkText(privateJwk), message));
const accessTokenHash = withErrors(native.accessTokenHash);
const verifyProof = withErrors(native.verifyProof);
const scopeRefusal = withErrors(native.scopeRefusal);

// RFC 9728 protected-resource metadata: built by the core.

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** The metadata document of a resource, as an object. */
const resourceMetadata = withErrors((options) => JSON.parse(native.resourceMetadataJson(options)));

/**
 * A handler (Express, Connect or plain `http`) answering with a resource's
 * metadata, built once.
 */
function resourceMetadataHandler(options) {
  const body = native.resourceMetadataJson(options);
  return function protonpassResourceMetadata(req, res) {
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Cache-Control', 'max-age=300');
    res.end(body);
  };
}

/**
 * Serve a resource's metadata from an Express app at its path-suffixed
 * well-known path and at the root one (for clients that try only the root).
 * Returns the path-suffixed path. Pair it with
 * `new Verifier({ ..., resourceMetadataUrl: resourceMetadataUrl(resource) })`.
 */
function serveResourceMetadata(app, options) {
  let handler;
  let path;
  try {
    handler = resourceMetadataHandler(options);
    path = native.resourceMetadataPath(options.resource);
  } catch (e) {
    throw toError(e);
  }
  for (const p of new Set([path, WELL_KNOWN])) app.get(p, handler);
  return path;
}

const resourceMetadataJson = withErrors(native.resourceMetadataJson);
const resourceMetadataPath = withErrors(native.resourceMetadataPath);
const resourceMetadataUrl = withErrors(native.resourceMetadataUrl);

// Names only (no computed values) in this list: the ES module entry point
// finds them by reading it (Node's CommonJS named-export detection).
module.exports = {
  jwkThumbprint,
  verifySignature,
  verifyEd25519,
  signEd25519,
  accessTokenHash,
  verifyProof,
  scopeRefusal,
  resourceMetadata,
  resourceMetadataHandler,
  serveResourceMetadata,
  resourceMetadataJson,
  resourceMetadataPath,
  resourceMetadataUrl,
};
