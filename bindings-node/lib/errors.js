'use strict';
// The addon's errors as `Error` objects with the core's stable `code`: the
// wrappers that map what the addon throws onto the classes of
// `error-classes.js` (which this module exports as well).

const classes = require('./error-classes.js');

const { ProtonPassError } = classes;

const MARKER = '\u0001protonpass:';

const CLASSES = {
  scope_not_granted: classes.ScopeNotGranted,
  insufficient_scope: classes.InsufficientScope,
  invalid_scope: classes.InvalidScope,
  access_denied: classes.AccessDenied,
  expired_token: classes.Expired,
  invalid_grant: classes.InvalidGrant,
  invalid_token: classes.InvalidToken,
  invalid_dpop_proof: classes.InvalidProof,
  use_dpop_nonce: classes.InvalidProof,
  invalid_request: classes.InvalidRequest,
  invalid_target: classes.InvalidRequest,
  invalid_client: classes.InvalidRequest,
  unsupported_grant_type: classes.InvalidRequest,
  unsupported_token_type: classes.InvalidRequest,
  broker_unavailable: classes.BrokerUnavailable,
  temporarily_unavailable: classes.BrokerUnavailable,
  server_error: classes.BrokerUnavailable,
  invalid_response: classes.InvalidResponse,
  storage_error: classes.StorageError,
};

// What to do, where the core's message says only what happened.
const HINTS = {
  access_denied: 'ask the owner again, perhaps for fewer scopes',
  expired_token: 'the owner did not approve in time: call authenticateWithProton again',
  scope_not_granted:
    'ask the owner for a grant that includes them, pass `extend: true` to start a new approval, or list fewer `required` scopes',
};

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

function withErrors(f) {
  return function (...args) {
    try {
      return f(...args);
    } catch (e) {
      throw toError(e);
    }
  };
}

module.exports = {
  ...classes,
  toError,
  wrapMethod,
  withErrors,
};
