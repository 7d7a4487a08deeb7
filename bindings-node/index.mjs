// ES module entry point: the same objects as the CommonJS one.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = require('./index.js');

export const {
  authenticateWithProton,
  Session,
  Verifier,
  requireScope,
  sendRejection,
  version,
  ProtonPassError,
  ScopeNotGrantedError,
  ApprovalError,
  BrokerUnavailableError,
  InvalidGrantError,
  VerificationError,
  jwkThumbprint,
  verifySignature,
  verifyEd25519,
  signEd25519,
  accessTokenHash,
  verifyProof,
} = pkg;
export default pkg;
