'use strict';
// Node-style middleware (Express, Connect or plain `http`) over the
// Verifier: `requireScope`, `verifier.requireScope`, `verifier.middleware`,
// `spend` (the owner's budget, after `requireScope`), and `sendRejection`.

const native = require('./addon.js');
const { ProtonPassError, VerificationError, toError } = require('./errors.js');
const { Verifier, checkNow, decimalText, flatHeaders, isThenable } = require('./verifier.js');

/**
 * The URL the client must have signed: the verifier's `baseUrl`, then the path
 * and query as received (`originalUrl` keeps a mounted router's prefix). Never
 * the `Host` header or `X-Forwarded-*`: the client chooses those.
 */
function requestUrl(baseUrl, req) {
  return `${baseUrl}${req.originalUrl || req.url}`;
}

function sendRejection(res, refusal) {
  const r = refusal instanceof VerificationError ? refusal.rejection : refusal;
  res.statusCode = r.status;
  if (r.wwwAuthenticate) res.setHeader('WWW-Authenticate', r.wwwAuthenticate);
  if (r.dpopNonce) res.setHeader('DPoP-Nonce', r.dpopNonce);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Type', 'application/json');
  res.end(r.body);
}

/**
 * Middleware (Express, Connect or plain `http`) that lets a request through
 * only with a valid DPoP-bound token carrying `scope`; sets `req.agent` to
 * the caller's identity (with its `owner`), and answers 401/403 with the right
 * WWW-Authenticate. Proofs are checked against the verifier's `baseUrl`.
 */
function requireScope(scope, options = {}) {
  const verifier = options.verifier;
  if (!(verifier instanceof native.Verifier)) {
    throw new ProtonPassError('invalid_request', 'requireScope needs { verifier }: a Verifier for this API (or call verifier.requireScope(scope))');
  }
  const baseUrl = verifier.baseUrl;
  if (!options.url && !baseUrl) {
    throw new ProtonPassError('invalid_request', "the Verifier has no baseUrl: new Verifier({ ..., baseUrl: 'https://api.example' }), the public URL clients address this API by (DPoP proofs are checked against it)");
  }
  if (options.amount !== undefined && typeof options.amount !== 'function') {
    // A constant amount is checked now: a number is refused before any request.
    decimalText(options.amount, 'requireScope({ amount })');
  }
  return async function protonpassRequireScope(req, res, next) {
    let url;
    let requirement;
    try {
      url = options.url ? options.url(req) : requestUrl(baseUrl, req);
      if (scope) {
        requirement = { scope };
        if (options.amount !== undefined) {
          const a = typeof options.amount === 'function' ? await options.amount(req) : options.amount;
          if (a !== undefined && a !== null && a !== '') requirement.amount = decimalText(a, 'requireScope({ amount })');
        }
      }
    } catch (e) {
      // The application's own callback failed: its error handler decides.
      if (typeof next === 'function') return next(e);
      throw e;
    }
    if (requirement && options.amount !== undefined && requirement.amount === undefined) {
      res.statusCode = 400;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ error: 'invalid_request', error_description: `the request carries no amount to check against ${scope}` }));
      return;
    }
    let verdict;
    try {
      verdict = checkNow(verifier, req.method, url, flatHeaders(req.rawHeaders || req.headers), requirement);
      if (isThenable(verdict)) verdict = await verdict;
    } catch (e) {
      const err = toError(e);
      const code = err.code === 'invalid_request' ? 'invalid_request' : 'temporarily_unavailable';
      const status = code === 'invalid_request' ? 400 : 503;
      res.statusCode = status;
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('Cache-Control', 'no-store');
      res.end(JSON.stringify({ error: code, error_description: err.message }));
      return;
    }
    if (verdict.rejection) {
      sendRejection(res, verdict.rejection);
      return;
    }
    req.agent = verdict.identity;
    if (res.locals) res.locals.agent = verdict.identity;
    if (typeof next === 'function') next();
  };
}

/** A JSON error answer (RFC 6749 body), not cached. */
function sendError(res, status, code, description) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Cache-Control', 'no-store');
  res.end(JSON.stringify({ error: code, error_description: description }));
}

/**
 * Middleware (Express, Connect or plain `http`) that spends from the owner's
 * budget of `scope` on the grant of the request `requireScope` let through
 * (`req.agent`), like Python's `protonpass_agent.fastapi.spend`. `amount`,
 * `currency` and `idempotencyKey` are values or functions of the request
 * (amounts are decimal strings, bigints or decimal objects, never numbers).
 * Sets `req.spend` (and `res.locals.spend`) to the broker's answer; a refusal
 * is answered as the verifier's are: `403 budget_exceeded` (or
 * `insufficient_scope`) with `WWW-Authenticate` naming the scope, amount and
 * currency, `401` once the grant is revoked, with the RFC 6749 JSON body.
 */
function spend(scope, options = {}) {
  const verifier = options.verifier;
  if (!(verifier instanceof native.Verifier)) {
    throw new ProtonPassError('invalid_request', 'spend needs { verifier }: the Verifier of this API, made with its credentials');
  }
  if (typeof scope !== 'string' || !scope) {
    throw new TypeError("spend's scope is the budget's resource:action, e.g. 'payment:execute'");
  }
  for (const k of ['amount', 'currency', 'idempotencyKey']) {
    if (options[k] === undefined || options[k] === null) {
      throw new TypeError(`spend needs { ${k} }: a value or a function of the request`);
    }
  }
  if (typeof options.amount !== 'function') decimalText(options.amount, 'spend({ amount })');
  const of = async (v, req) => (typeof v === 'function' ? v(req) : v);
  return async function protonpassSpend(req, res, next) {
    let args;
    try {
      if (!req.agent || typeof req.agent.grantId !== 'string') {
        throw new Error('spend runs after requireScope: the request has no verified agent (req.agent)');
      }
      const [amount, currency, key] = await Promise.all([
        of(options.amount, req), of(options.currency, req), of(options.idempotencyKey, req),
      ]);
      const missing = (amount === undefined || amount === null || amount === '') ? 'amount'
        : !currency ? 'currency' : !key ? 'idempotency key' : undefined;
      if (missing) {
        sendError(res, 400, 'invalid_request', `the request carries no ${missing} to spend from the budget of ${scope}`);
        return;
      }
      args = { scope, amount: decimalText(amount, 'spend({ amount })'), currency: String(currency), idempotencyKey: String(key) };
    } catch (e) {
      // The application's own mistake (or callback): its error handler decides.
      if (typeof next === 'function') return next(e);
      throw e;
    }
    let result;
    try {
      result = await verifier.spend(req.agent, args);
    } catch (e) {
      if (e instanceof VerificationError) {
        sendRejection(res, e);
        return;
      }
      const err = toError(e);
      if (err.code === 'invalid_request') sendError(res, 400, 'invalid_request', err.message);
      // The broker refused this API's credentials: the API's misconfiguration,
      // never the agent's fault; the details are for the API's own logs.
      else if (err.code === 'invalid_client' || err.code === 'server_error') sendError(res, 500, 'server_error', 'this API cannot spend against budgets now');
      else sendError(res, 503, 'temporarily_unavailable', 'the broker cannot answer now: try again');
      return;
    }
    req.spend = result;
    if (res.locals) res.locals.spend = result;
    if (typeof next === 'function') next();
  };
}

Object.defineProperty(Verifier.prototype, 'requireScope', {
  configurable: true,
  writable: true,
  value: function (scope, options = {}) {
    return requireScope(scope, { ...options, verifier: this });
  },
});

Object.defineProperty(Verifier.prototype, 'middleware', {
  configurable: true,
  writable: true,
  value: function (options = {}) {
    return requireScope(undefined, { ...options, verifier: this });
  },
});

module.exports = { requireScope, sendRejection, spend };
