'use strict';
// Sessions: `authenticateWithProton`, `session.fetch` over Node's fetch
// (signing, nonce and renewal retries, redirects, step-up), and revocation
// when the process ends.

const native = require('./addon.js');
const { ProtonPassError, toError, wrapMethod } = require('./errors.js');

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

module.exports = { Session, authenticateWithProton };
