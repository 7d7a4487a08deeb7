'use strict';
// The package's entry point. The addon (`native.js`, built from `src/*.rs`)
// does the work; this file only turns its errors into `Error` objects with a
// stable `code`, adds `session.fetch` over Node's fetch, revocation at exit,
// and Node-style middleware over `Verifier.check`. No protocol decision is made
// here: what a response asks of the client comes from `observeResponse`, what
// a request is worth from `check`.

let native;
try {
  native = require('./native.js');
} catch (e) {
  const err = new Error(
    'protonpass-agent: the native addon is not built (the install script did not run or failed). ' +
      'Run `npm rebuild protonpass-agent` with a Rust toolchain on PATH; with npm 11, allow the script first: ' +
      '`npm pkg set allowScripts.protonpass-agent=true --json`.',
    { cause: e },
  );
  err.code = 'addon_not_built';
  throw err;
}

const MARKER = '\u0001protonpass:';

/** Every error this package throws: `code` is the core's stable code. */
class ProtonPassError extends Error {
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ProtonPassError';
    this.code = code;
    if (details.reason) this.reason = details.reason;
  }
}

// The same classes, with the same names and codes, as the Python package
// (spec/08-errors.md section 8.4).

/** Required scopes were not granted (`scope_not_granted`); `missing` and `granted` list them. */
class ScopeNotGranted extends ProtonPassError {
  constructor(code, message, details = {}) {
    super(code, message, details);
    this.name = 'ScopeNotGranted';
    this.missing = splitScopes(details.missing);
    this.granted = splitScopes(details.granted);
  }
}

/** A class named `name` under `Base`, for a kind of failure with nothing more to carry. */
function errorClass(name, Base = ProtonPassError) {
  const C = class extends Base {
    constructor(code, message, details = {}) {
      super(code, message, details);
      this.name = name;
    }
  };
  Object.defineProperty(C, 'name', { value: name });
  return C;
}

/**
 * Deprecated (one release): the base of `AccessDenied` and `Expired`, the
 * owner's refusal and an approval not given in time. Catch those instead.
 */
const ApprovalError = errorClass('ApprovalError');
/** The owner denied the request (`access_denied`). */
const AccessDenied = errorClass('AccessDenied', ApprovalError);
/** The device request or enrollment code expired before it was used (`expired_token`). */
const Expired = errorClass('Expired', ApprovalError);
/** A verified token lacks the scope a request needs (`insufficient_scope`). */
const InsufficientScope = errorClass('InsufficientScope');
/** A scope is malformed, or nothing requested could be granted (`invalid_scope`). */
const InvalidScope = errorClass('InvalidScope');
/** The grant, code or refresh token is invalid, expired, spent or revoked (`invalid_grant`). */
const InvalidGrant = errorClass('InvalidGrant');
/** An access token was refused (`invalid_token`). */
const InvalidToken = errorClass('InvalidToken');
/** A DPoP proof was refused, or a nonce is required (`invalid_dpop_proof`, `use_dpop_nonce`). */
const InvalidProof = errorClass('InvalidProof');
/** The request or an argument is malformed (`invalid_request` and the like). */
const InvalidRequest = errorClass('InvalidRequest');
/** The broker could not be reached or cannot answer now (`broker_unavailable`, `temporarily_unavailable`, `server_error`). */
const BrokerUnavailable = errorClass('BrokerUnavailable');
/** The broker answered something that is not a valid protocol response (`invalid_response`). */
const InvalidResponse = errorClass('InvalidResponse');
/** The local grant store could not be read or written (`storage_error`). */
const StorageError = errorClass('StorageError');

/** A request refused by `Verifier.verify`: carries what to answer. */
class VerificationError extends ProtonPassError {
  constructor(rejection) {
    super(rejection.code, rejection.message, { reason: rejection.reason });
    this.name = 'VerificationError';
    this.status = rejection.status;
    this.wwwAuthenticate = rejection.wwwAuthenticate;
    this.dpopNonce = rejection.dpopNonce;
    this.rejection = rejection;
  }
}

const CLASSES = {
  scope_not_granted: ScopeNotGranted,
  insufficient_scope: InsufficientScope,
  invalid_scope: InvalidScope,
  access_denied: AccessDenied,
  expired_token: Expired,
  invalid_grant: InvalidGrant,
  invalid_token: InvalidToken,
  invalid_dpop_proof: InvalidProof,
  use_dpop_nonce: InvalidProof,
  invalid_request: InvalidRequest,
  invalid_target: InvalidRequest,
  invalid_client: InvalidRequest,
  unsupported_grant_type: InvalidRequest,
  unsupported_token_type: InvalidRequest,
  broker_unavailable: BrokerUnavailable,
  temporarily_unavailable: BrokerUnavailable,
  server_error: BrokerUnavailable,
  invalid_response: InvalidResponse,
  storage_error: StorageError,
};

// What to do, where the core's message says only what happened.
const HINTS = {
  access_denied: 'ask the owner again, perhaps for fewer scopes',
  expired_token: 'the owner did not approve in time: call authenticateWithProton again',
  scope_not_granted:
    'ask the owner for a grant that includes them, pass `extend: true` to start a new approval, or list fewer `required` scopes',
};

function splitScopes(s) {
  return typeof s === 'string' && s.length ? s.split(/\s+/).filter(Boolean) : [];
}

const NAPI_ARG_ERRORS = new Set([
  'InvalidArg', 'ObjectExpected', 'StringExpected', 'NameExpected', 'FunctionExpected',
  'NumberExpected', 'BooleanExpected', 'ArrayExpected', 'BigintExpected',
]);

/** Turn what the addon threw into a ProtonPassError (other errors pass through). */
function toError(e) {
  if (e instanceof ProtonPassError || !(e instanceof Error)) return e;
  const msg = typeof e.message === 'string' ? e.message : '';
  const at = msg.indexOf(MARKER);
  if (at >= 0) {
    let d;
    try {
      d = JSON.parse(msg.slice(at + MARKER.length));
    } catch {
      return e;
    }
    const Cls = CLASSES[d.code] || ProtonPassError;
    const hint = HINTS[d.code];
    const message = hint ? `${d.message}: ${hint}` : d.message;
    return new Cls(d.code, message, d);
  }
  if (NAPI_ARG_ERRORS.has(e.code)) {
    return new ProtonPassError('invalid_request', `invalid argument: ${msg}`, { cause: e });
  }
  return e;
}

function wrapMethod(proto, name) {
  const f = proto[name];
  if (typeof f !== 'function') throw new Error(`protonpass-agent: the addon lacks ${name}`);
  Object.defineProperty(proto, name, {
    configurable: true,
    writable: true,
    value: function (...args) {
      let r;
      try {
        r = f.apply(this, args);
      } catch (e) {
        throw toError(e);
      }
      return r && typeof r.then === 'function' ? r.catch((e) => { throw toError(e); }) : r;
    },
  });
}

// ---------------------------------------------------------------------------
// Sessions

const { Session } = native;
for (const m of ['headers', 'route', 'observeResponse', 'renew', 'addAudience', 'close', 'stepUp', 'oneTimeHeaders']) wrapMethod(Session.prototype, m);

const nativeClose = Session.prototype.close;
Object.defineProperty(Session.prototype, 'close', {
  configurable: true,
  writable: true,
  value: async function close(revokeGrant) {
    live.delete(this);
    return nativeClose.call(this, revokeGrant);
  },
});

Object.defineProperty(Session.prototype, 'fetch', {
  configurable: true,
  writable: true,
  value: sessionFetch,
});

const asyncDispose = Symbol.asyncDispose || Symbol.for('nodejs.asyncDispose');
Object.defineProperty(Session.prototype, asyncDispose, {
  configurable: true,
  writable: true,
  value: function () {
    return this.close();
  },
});

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
// The sessions opened with `allowStepUp: true`.
const stepUpAllowed = new WeakSet();
const STEP_UP_ERRORS = /error="(insufficient_scope|budget_exceeded)"/;

/**
 * `fetch` with the session's credentials: signs each attempt, answers one
 * nonce challenge and one refused token (after renewing), and follows
 * redirects under the session's audiences, signing each hop. A URL outside
 * the audiences (same scheme, host and port, path under the audience's path)
 * is refused with an `invalid_request` error before anything is sent; a
 * redirect to one is returned as it is. A URL under an audience the broker
 * serves through its gateway goes to the gateway URL (`session.route`).
 * With `init.stepUp` ({ payee, amount, currency, bindingMessage }) and a
 * session opened with `allowStepUp: true`, a `403` `insufficient_scope` or
 * `budget_exceeded` asks the owner (`session.stepUp`) and the call is sent
 * once more with the one-time token; that answer is the response.
 */
async function sessionFetch(input, init = {}) {
  const stepUp = init && init.stepUp;
  if (!stepUp) return signedFetch.call(this, input, init);
  if (typeof stepUp !== 'object') {
    throw new ProtonPassError('invalid_request', 'stepUp takes { payee, amount, currency, bindingMessage }');
  }
  // The body is read once: the retry sends it again.
  const request = new Request(input, init);
  const body = request.body === null ? undefined : await request.arrayBuffer();
  const { stepUp: _s, ...rest } = init;
  const first = { ...rest, method: request.method, headers: request.headers, body, signal: request.signal };
  const response = await signedFetch.call(this, request.url, first);
  const challenge = response.headers.get('www-authenticate') ?? '';
  if (response.status !== 403 || !stepUpAllowed.has(this) || !STEP_UP_ERRORS.test(challenge)) return response;
  await discard(response);
  const token = await this.stepUp(request.url, challenge, stepUp);
  const url = this.route(request.url);
  const headers = new Headers(request.headers);
  for (const [k, v] of Object.entries(this.oneTimeHeaders(token, request.method, url))) headers.set(k, v);
  return fetch(url, { method: request.method, headers, body, redirect: 'manual', signal: request.signal });
}

async function signedFetch(input, init = {}) {
  const reason = init && typeof init.reason === 'string' ? init.reason : undefined;
  const request = new Request(input, init);
  const followMode = request.redirect;
  let method = request.method;
  let url = this.route(request.url);
  let body = request.body === null ? undefined : await request.arrayBuffer();
  const baseHeaders = new Headers(request.headers);
  for (let hop = 0; ; hop++) {
    let nonceRetried = false;
    let renewed = false;
    let response;
    for (;;) {
      const headers = new Headers(baseHeaders);
      for (const [k, v] of Object.entries(this.headers(method, url, reason))) headers.set(k, v);
      response = await fetch(url, { method, headers, body, redirect: 'manual', signal: request.signal });
      const challenge = this.observeResponse(
        url,
        response.status,
        response.headers.get('www-authenticate') ?? undefined,
        response.headers.get('dpop-nonce') ?? undefined,
      );
      if (challenge === 'nonce' && !nonceRetried) {
        nonceRetried = true;
      } else if (challenge === 'renew' && !renewed) {
        renewed = true;
        await discard(response);
        await this.renew();
        continue;
      } else {
        break;
      }
      await discard(response);
    }
    const location = response.headers.get('location');
    if (!REDIRECTS.has(response.status) || !location || followMode === 'manual') return response;
    if (followMode === 'error') throw new TypeError('fetch failed: a redirect with redirect: "error"');
    const next = new URL(location, url);
    if (next.origin !== new URL(url).origin || hop >= 19 || !underAudiences(this, next.href)) return response;
    await discard(response);
    if (response.status === 303 || ((response.status === 301 || response.status === 302) && method === 'POST')) {
      if (method !== 'HEAD') method = 'GET';
      body = undefined;
      for (const h of ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location']) baseHeaders.delete(h);
    }
    url = next.href;
  }
}

/**
 * Whether the session would sign for `url` (it lies under one of its
 * audiences): a redirect elsewhere is handed back as it is rather than
 * followed into an error.
 */
function underAudiences(session, url) {
  try {
    session.headers('GET', url);
    return true;
  } catch (e) {
    if (e instanceof ProtonPassError && e.code === 'invalid_request') return false;
    throw e;
  }
}

async function discard(response) {
  try {
    await response.body?.cancel();
  } catch {
    // The body was already consumed or the stream errored: nothing to free.
  }
}

// Revocation when the process ends: on SIGINT/SIGTERM and when the event loop
// empties (asynchronously), and on process.exit() (synchronously, bounded).
const live = new Set();
let hooksInstalled = false;

async function closeAll(limitMs) {
  const all = [...live];
  live.clear();
  const closing = Promise.allSettled(all.map((s) => nativeClose.call(s, false)));
  let timer;
  const limit = new Promise((resolve) => {
    timer = setTimeout(resolve, limitMs);
    timer.unref();
  });
  await Promise.race([closing, limit]);
  clearTimeout(timer);
}

function installExitHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('beforeExit', () => {
    if (live.size) closeAll(5000);
  });
  process.on('exit', () => {
    for (const s of live) {
      try {
        s.closeSync(1500);
      } catch {
        // Exiting: nothing more can be done.
      }
    }
    live.clear();
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    const onSignal = async () => {
      await closeAll(3000);
      process.removeListener(signal, onSignal);
      // Nobody else handles it: end the way the signal would have.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
      else process.on(signal, onSignal);
    };
    process.on(signal, onSignal);
  }
}

/** What an aborted signal rejects with: its reason, else an `AbortError`. */
function abortReason(signal) {
  if (signal.reason !== undefined) return signal.reason;
  const e = new Error('the operation was aborted');
  e.name = 'AbortError';
  return e;
}

/**
 * Ask the broker for access; see the `AuthenticateOptions` documentation.
 * Resolves to a `Session`.
 */
async function authenticateWithProton(options = {}) {
  if (options === null || typeof options !== 'object') {
    throw new ProtonPassError('invalid_request', 'authenticateWithProton takes an options object, e.g. { scope: ["travel:book"], audience: "https://api.example" }');
  }
  const { revokeOnExit = true, onPrompt, signal, ...rest } = options;
  if (onPrompt !== undefined && typeof onPrompt !== 'function') {
    throw new ProtonPassError('invalid_request', 'onPrompt must be a function taking { verificationUri, verificationUriComplete, userCode, expiresIn }');
  }
  if (signal !== undefined && !(signal && typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function')) {
    throw new ProtonPassError('invalid_request', 'signal must be an AbortSignal, e.g. AbortSignal.timeout(60_000) or an AbortController\'s signal');
  }
  if (signal && signal.aborted) throw abortReason(signal);
  // A throwing onPrompt or an aborted signal ends the wait for approval at
  // once: the native side withdraws the request at the broker and rejects
  // with `cancelled`, which becomes the prompt's error or the abort reason.
  const waitId = native.newWait();
  rest.waitId = waitId;
  let promptFailure = null;
  const stopWaiting = (e) => {
    if (!promptFailure) promptFailure = { error: e };
    native.cancelWait(waitId);
  };
  if (onPrompt) {
    rest.onPrompt = (prompt) => {
      try {
        const r = onPrompt(prompt);
        if (r && typeof r.then === 'function') r.then(undefined, stopWaiting);
      } catch (e) {
        stopWaiting(e);
      }
    };
  }
  const onAbort = () => native.cancelWait(waitId);
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  let session;
  try {
    session = await native.authenticateWithProton(rest);
  } catch (e) {
    const err = toError(e);
    if (err instanceof ProtonPassError && err.code === 'cancelled') {
      if (promptFailure) throw promptFailure.error;
      if (signal && signal.aborted) throw abortReason(signal);
    }
    throw err;
  } finally {
    if (signal) signal.removeEventListener('abort', onAbort);
    native.cancelWait(waitId); // forgets the id (the wait is over)
  }
  if (rest.allowStepUp === true) stepUpAllowed.add(session);
  if (revokeOnExit) {
    live.add(session);
    installExitHooks();
  }
  return session;
}

// ---------------------------------------------------------------------------
// Verifier and middleware

class Verifier extends native.Verifier {
  constructor(config) {
    try {
      super(config);
    } catch (e) {
      throw toError(e);
    }
  }
}
wrapMethod(native.Verifier.prototype, 'ready');

/**
 * Header names and values, alternating (as `rawHeaders` has them), from
 * `rawHeaders`, a `Headers` object, a plain object or `[name, value]` pairs.
 */
function flatHeaders(h) {
  if (!h) return [];
  if (Array.isArray(h)) {
    if (!h.length || typeof h[0] === 'string') return h;
    const out = [];
    for (const pair of h) {
      if (!Array.isArray(pair)) {
        throw new ProtonPassError('invalid_request', 'headers are [name, value] pairs, names and values alternating (rawHeaders), a Headers object or a plain object');
      }
      out.push(String(pair[0]), String(pair[1]));
    }
    return out;
  }
  const out = [];
  if (typeof h.entries === 'function' && typeof h.get === 'function') {
    for (const [k, v] of h.entries()) out.push(k, v);
    return out;
  }
  for (const k of Object.keys(h)) {
    const v = h[k];
    if (Array.isArray(v)) for (const x of v) out.push(k, String(x));
    else if (v !== undefined) out.push(k, String(v));
  }
  return out;
}

const throwMapped = (e) => {
  throw toError(e);
};

/**
 * One crossing into the addon for one request: the verdict, or a Promise of
 * it when the verifier must reach the broker first. Throws a ProtonPassError.
 */
function checkNow(verifier, method, url, headers, requirement) {
  let scope;
  let amount;
  if (requirement !== undefined && requirement !== null) {
    if (typeof requirement !== 'object' || typeof requirement.scope !== 'string') {
      throw new ProtonPassError('invalid_request', 'a requirement is { scope, amount? }, with scope a string such as "travel:book"');
    }
    scope = requirement.scope;
    amount = requirement.amount;
  }
  let r;
  try {
    r = verifier.checkFlat(method, url, headers, scope, amount);
  } catch (e) {
    throw toError(e);
  }
  return r instanceof Promise ? r.catch(throwMapped) : r;
}

Object.defineProperty(Verifier.prototype, 'check', {
  configurable: true,
  writable: true,
  /** Verify a request; resolves to its verdict (`identity` or `rejection`), never rejects for a refusal. */
  value: async function check(request, requirement) {
    if (request === null || typeof request !== 'object') {
      throw new ProtonPassError('invalid_request', 'check takes a request { method, url, headers }');
    }
    return checkNow(this, request.method, request.url, flatHeaders(request.headers), requirement);
  },
});

Object.defineProperty(Verifier.prototype, 'verify', {
  configurable: true,
  writable: true,
  /** Verify a request; resolves to the caller's identity, rejects with a VerificationError. */
  value: async function verify(request, requirement) {
    let verdict = checkNow(this, request.method, String(request.url), flatHeaders(request.headers), requirement);
    if (verdict instanceof Promise) verdict = await verdict;
    if (verdict.rejection) throw new VerificationError(verdict.rejection);
    return verdict.identity;
  },
});

function decimalText(amount) {
  // Numbers are refused: 0.1 + 0.2 is not 0.3, and money must be exact.
  if (typeof amount === 'string') return amount;
  if (typeof amount === 'bigint') return amount.toString();
  if (amount !== null && typeof amount === 'object' && typeof amount.toString === 'function' && amount.toString !== Object.prototype.toString) {
    return amount.toString();
  }
  throw new ProtonPassError('invalid_request', `amount must be a decimal string, a bigint or a decimal object, not ${typeof amount}`);
}

function spent(outcome) {
  if (outcome.rejection) throw new VerificationError(outcome.rejection);
  return outcome.result;
}

for (const m of ['spendRaw', 'refundRaw']) wrapMethod(native.Verifier.prototype, m);

Object.defineProperty(Verifier.prototype, 'spend', {
  configurable: true,
  writable: true,
  /** Spend from the owner's budget; resolves to the broker's answer, rejects with a VerificationError. */
  value: async function spend(agent, options = {}) {
    if (!agent || typeof agent.grantId !== 'string' || typeof agent.tokenId !== 'string') {
      throw new ProtonPassError('invalid_request', 'spend needs the identity of a verified request (req.agent)');
    }
    const { scope, currency, idempotencyKey } = options;
    const amount = decimalText(options.amount);
    return spent(await this.spendRaw(agent.grantId, agent.tokenId, scope, amount, currency, idempotencyKey));
  },
});

Object.defineProperty(Verifier.prototype, 'refund', {
  configurable: true,
  writable: true,
  /** Give back a spend by its idempotency key; resolves to the broker's answer. */
  value: async function refund(agent, idempotencyKey) {
    if (!agent || typeof agent.grantId !== 'string') {
      throw new ProtonPassError('invalid_request', 'refund needs the identity of a verified request (req.agent)');
    }
    return spent(await this.refundRaw(agent.grantId, idempotencyKey));
  },
});

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
  return async function protonpassRequireScope(req, res, next) {
    let url;
    let requirement;
    try {
      url = options.url ? options.url(req) : requestUrl(baseUrl, req);
      if (scope) {
        requirement = { scope };
        if (options.amount !== undefined) {
          const a = typeof options.amount === 'function' ? await options.amount(req) : options.amount;
          if (a !== undefined && a !== null && a !== '') requirement.amount = String(a);
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
      if (verdict instanceof Promise) verdict = await verdict;
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

// ---------------------------------------------------------------------------
// Protocol functions (RFC 7638, RFC 8037, RFC 9449): the core's own, a JWK
// object passed as JSON text, errors mapped to ProtonPassError.

function withErrors(f) {
  return function (...args) {
    try {
      return f(...args);
    } catch (e) {
      throw toError(e);
    }
  };
}
const jwkText = (jwk) => (typeof jwk === 'string' ? jwk : JSON.stringify(jwk));
const protocol = {
  jwkThumbprint: withErrors((jwk) => native.jwkThumbprint(jwkText(jwk))),
  verifySignature: withErrors((jwk, alg, message, signature) => native.verifySignature(jwkText(jwk), alg, message, signature)),
  verifyEd25519: withErrors(native.verifyEd25519),
  signEd25519: withErrors((privateJwk, message) => native.signEd25519(jwkText(privateJwk), message)),
  accessTokenHash: withErrors(native.accessTokenHash),
  verifyProof: withErrors(native.verifyProof),
  scopeRefusal: withErrors(native.scopeRefusal),
};

// ---------------------------------------------------------------------------
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

module.exports = {
  authenticateWithProton,
  Session,
  Verifier,
  requireScope,
  sendRejection,
  version: native.version,
  ProtonPassError,
  ScopeNotGranted,
  InsufficientScope,
  InvalidScope,
  AccessDenied,
  Expired,
  InvalidGrant,
  InvalidToken,
  InvalidProof,
  InvalidRequest,
  BrokerUnavailable,
  InvalidResponse,
  StorageError,
  /** A revoked, expired or spent grant is an `InvalidGrant` (as in Python). */
  Revoked: InvalidGrant,
  VerificationError,
  // Deprecated names, kept for one release.
  ScopeNotGrantedError: ScopeNotGranted,
  ApprovalError,
  BrokerUnavailableError: BrokerUnavailable,
  InvalidGrantError: InvalidGrant,
  resourceMetadata,
  resourceMetadataHandler,
  serveResourceMetadata,
  resourceMetadataJson: withErrors(native.resourceMetadataJson),
  resourceMetadataPath: withErrors(native.resourceMetadataPath),
  resourceMetadataUrl: withErrors(native.resourceMetadataUrl),
  ...protocol,
};
