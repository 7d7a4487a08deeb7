'use strict';
// The addon's errors as `Error` objects with the core's stable `code`: the
// classes (the same names and codes as the Python package), and the wrappers
// that map what the addon throws.

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
  ProtonPassError,
  ScopeNotGranted,
  ApprovalError,
  AccessDenied,
  Expired,
  InsufficientScope,
  InvalidScope,
  InvalidGrant,
  InvalidToken,
  InvalidProof,
  InvalidRequest,
  BrokerUnavailable,
  InvalidResponse,
  StorageError,
  VerificationError,
  toError,
  wrapMethod,
  withErrors,
};
