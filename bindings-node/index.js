'use strict';
// The package's entry point. The addon (`native.js`, built from `src/*.rs`)
// does the work; the modules under `lib/` only turn its errors into `Error`
// objects with a stable `code` (`errors.js`), add `session.fetch` over Node's
// fetch and revocation at exit (`session.js`), `check`/`verify`/`spend` over
// the addon's verifier (`verifier.js`), Node-style middleware over them
// (`middleware.js`), and the protocol and metadata functions
// (`protocol.js`). No protocol decision is made here: what a response asks
// of the client comes from `observeResponse`, what a request is worth from
// `check`.

const native = require('./lib/addon.js');
// Every error class (ProtonPassError and its subclasses, VerificationError).
const { toError, wrapMethod, withErrors, ...errors } = require('./lib/errors.js');
const { Session, authenticateWithProton } = require('./lib/session.js');
const { Verifier } = require('./lib/verifier.js');
const { requireScope, sendRejection, spend } = require('./lib/middleware.js');
const protocol = require('./lib/protocol.js');

module.exports = {
  authenticateWithProton,
  Session,
  Verifier,
  requireScope,
  sendRejection,
  spend,
  version: native.version,
  ...errors,
  /** A revoked, expired or spent grant is an `InvalidGrant` (as in Python). */
  Revoked: errors.InvalidGrant,
  // Deprecated names, kept for one release (and `ApprovalError`).
  ScopeNotGrantedError: errors.ScopeNotGranted,
  BrokerUnavailableError: errors.BrokerUnavailable,
  InvalidGrantError: errors.InvalidGrant,
  ...protocol,
};
