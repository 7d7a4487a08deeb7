'use strict';
// The package's entry point. The addon (`native.js`, built from `src/*.rs`)
// does the work; the modules under `lib/` only turn its errors into `Error`
// objects with a stable `code` (`error-classes.js`, `errors.js`), add
// `session.fetch` over Node's fetch and revocation at exit (`session.js`),
// `check`/`verify`/`spend` over the addon's verifier (`verifier.js`),
// Node-style middleware over them (`middleware.js`), and the protocol and
// metadata functions (`protocol.js`). No protocol decision is made here: what
// a response asks of the client comes from `observeResponse`, what a request
// is worth from `check`.

const { version } = require('./lib/addon.js');
const { Session, authenticateWithProton } = require('./lib/session.js');
const { Verifier } = require('./lib/verifier.js');
const { requireScope, sendRejection, spend } = require('./lib/middleware.js');
const { InvalidGrant, ScopeNotGranted, BrokerUnavailable } = require('./lib/error-classes.js');

/** A revoked, expired or spent grant is an `InvalidGrant` (as in Python). */
const Revoked = InvalidGrant;

// Names only (no computed values) in this object, and other modules' exports
// spread with `...require()`: `index.mjs` re-exports what Node's CommonJS
// named-export detection reads here, so both entry points give the same names.
module.exports = {
  authenticateWithProton,
  Session,
  Verifier,
  requireScope,
  sendRejection,
  spend,
  version,
  // Every error class (ProtonPassError and its subclasses, VerificationError).
  ...require('./lib/error-classes.js'),
  Revoked,
  // Deprecated names, kept for one release (and `ApprovalError`).
  ScopeNotGrantedError: ScopeNotGranted,
  BrokerUnavailableError: BrokerUnavailable,
  InvalidGrantError: InvalidGrant,
  // The protocol and metadata functions.
  ...require('./lib/protocol.js'),
};
