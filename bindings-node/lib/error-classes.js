'use strict';
// The package's error classes: the same names and codes as the Python
// package (spec/08-errors.md section 8.4). `errors.js` maps what the addon
// throws onto them; `index.js` exports them as they are.

/** Every error this package throws: `code` is the core's stable code. */
class ProtonPassError extends Error {
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ProtonPassError';
    this.code = code;
    if (details.reason) this.reason = details.reason;
  }
}

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

/** @deprecated Catch `AccessDenied` or `Expired`: their base, kept for one release. */
const ApprovalError = errorClass('ApprovalError');
/** The owner denied the request (`access_denied`). */
const AccessDenied = errorClass('AccessDenied', ApprovalError);
/** The device request or enrollment code expired before it was used (`expired_token`). */
const Expired = errorClass('Expired', ApprovalError);
/** A verified token lacks the scope a request needs (`insufficient_scope`). */
const InsufficientScope = errorClass('InsufficientScope');
/** A scope is malformed, or nothing requested could be granted (`invalid_scope`). */
const InvalidScope = errorClass('InvalidScope');
/** The grant is invalid, expired, spent or revoked (`invalid_grant`): authenticate again. */
const InvalidGrant = errorClass('InvalidGrant');
/** An access token was refused (`invalid_token`). */
const InvalidToken = errorClass('InvalidToken');
/** A DPoP proof was refused, or a nonce is required (`invalid_dpop_proof`, `use_dpop_nonce`). */
const InvalidProof = errorClass('InvalidProof');
/** The request or an argument is malformed (`invalid_request`, `invalid_target`, ...). */
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

function splitScopes(s) {
  return typeof s === 'string' && s.length ? s.split(/\s+/).filter(Boolean) : [];
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
};
