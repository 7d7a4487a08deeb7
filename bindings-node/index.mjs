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
  spend,
  version,
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
  Revoked,
  VerificationError,
  ScopeNotGrantedError,
  ApprovalError,
  BrokerUnavailableError,
  InvalidGrantError,
  resourceMetadata,
  resourceMetadataHandler,
  serveResourceMetadata,
  resourceMetadataJson,
  resourceMetadataPath,
  resourceMetadataUrl,
  jwkThumbprint,
  verifySignature,
  verifyEd25519,
  signEd25519,
  accessTokenHash,
  verifyProof,
  scopeRefusal,
} = pkg;
export default pkg;
