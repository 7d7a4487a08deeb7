'use strict';
// The Verifier: `check` and `verify` (one call into the addon per request),
// `spend` and `refund`.

const native = require('./addon.js');
const { ProtonPassError, VerificationError, toError, wrapMethod } = require('./errors.js');

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
    if (requirement.amount !== undefined && requirement.amount !== null) {
      amount = decimalText(requirement.amount, 'the requirement\'s amount');
    }
  }
  let r;
  try {
    r = verifier.checkFlat(method, url, headers, scope, amount);
  } catch (e) {
    throw toError(e);
  }
  // A promise (when the check needs the network) is told apart from a verdict
  // by being a thenable, not by `instanceof Promise`: an application that
  // replaces `global.Promise`, or code running in another realm (a `vm`
  // context), would otherwise take the promise for a verdict. Whatever comes
  // back must be a well-formed verdict, or the request is refused.
  return isThenable(r) ? Promise.resolve(r).then(wellFormed, throwMapped) : wellFormed(r);
}

/** Whether `v` is a promise-like value (from any realm or library). */
function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function';
}

/** A verdict has exactly one of `identity` (an object) and `rejection`; anything else fails closed. */
function wellFormed(v) {
  const ok = v !== null && typeof v === 'object'
    && ((v.identity !== null && typeof v.identity === 'object' && !v.rejection)
      || (v.identity == null && v.rejection !== null && typeof v.rejection === 'object'));
  if (!ok) throw new ProtonPassError('temporarily_unavailable', 'the verifier gave no verdict');
  return v;
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
    if (isThenable(verdict)) verdict = await verdict;
    if (verdict.rejection) throw new VerificationError(verdict.rejection);
    return verdict.identity;
  },
});

/**
 * An amount as the decimal text the core reads: a string as given, a bigint
 * or a decimal object (Decimal.js, big.js: anything whose own `toString()`
 * gives the digits) as its text. A JavaScript number, boxed or not, is a
 * `TypeError`: 0.1 + 0.2 is not 0.3, and money must be exact.
 */
function decimalText(amount, where = 'amount') {
  if (typeof amount === 'string') return amount;
  if (typeof amount === 'bigint') return amount.toString();
  if (typeof amount === 'number' || Object.prototype.toString.call(amount) === '[object Number]') {
    throw new TypeError(`${where} is a JavaScript number (${String(amount)}), which cannot hold money exactly: pass a decimal string such as '12.50' (or a bigint, or a decimal object such as a Decimal.js value)`);
  }
  if (amount !== null && typeof amount === 'object' && typeof amount.toString === 'function' && amount.toString !== Object.prototype.toString) {
    const text = amount.toString();
    if (typeof text === 'string') return text;
  }
  throw new TypeError(`${where} must be a decimal string such as '12.50' (or a bigint, or a decimal object), not ${amount === null ? 'null' : typeof amount}`);
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
    const amount = decimalText(options.amount, 'spend({ amount })');
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

module.exports = { Verifier, checkNow, decimalText, flatHeaders, isThenable };
