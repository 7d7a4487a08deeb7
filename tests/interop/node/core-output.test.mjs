// jose verifies what the core produces: access tokens and DPoP proofs.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  EmbeddedJWK, calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, errors,
  generateKeyPair, jwtVerify,
} from 'jose';

import { ath, make, withClaims } from './cli.mjs';

let made;
before(() => {
  made = make();
});

const verifyToken = (token) =>
  jwtVerify(token, createLocalJWKSet(made.jwks), {
    issuer: made.issuer,
    audience: made.audience,
    typ: 'at+jwt',
    algorithms: ['EdDSA'],
    requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'],
  });

test('jose verifies the access token with the JWKS', async () => {
  const { payload, protectedHeader } = await verifyToken(made.token);
  assert.deepEqual(protectedHeader, { typ: 'at+jwt', alg: 'EdDSA', kid: made.kid });
  assert.equal(payload.cnf.jkt, made.jkt);
  assert.equal(payload.act.sub, payload.client_id);
  assert.equal(payload.exp - payload.iat, 3600);
});

test('jose refuses the token for another audience or issuer', async () => {
  const keys = createLocalJWKSet(made.jwks);
  await assert.rejects(
    jwtVerify(made.token, keys, { audience: 'https://other.example', algorithms: ['EdDSA'] }),
    errors.JWTClaimValidationFailed,
  );
  await assert.rejects(
    jwtVerify(made.token, keys, { issuer: 'https://other.example', algorithms: ['EdDSA'] }),
    errors.JWTClaimValidationFailed,
  );
});

test('jose refuses a tampered access token', async () => {
  const forged = withClaims(made.token, { scope: 'travel:search travel:book admin:all' });
  await assert.rejects(verifyToken(forged), errors.JWSSignatureVerificationFailed);
});

test('jose refuses the token under another key', async () => {
  const { publicKey } = await generateKeyPair('Ed25519');
  await assert.rejects(
    jwtVerify(made.token, publicKey, { algorithms: ['EdDSA'] }),
    errors.JWSSignatureVerificationFailed,
  );
});

test('jose verifies the DPoP proof with its embedded key', async () => {
  const header = decodeProtectedHeader(made.proof);
  assert.deepEqual(Object.keys(header).sort(), ['alg', 'jwk', 'typ']);
  assert.equal(await calculateJwkThumbprint(header.jwk, 'sha256'), made.jkt);
  const { payload } = await jwtVerify(made.proof, EmbeddedJWK, {
    typ: 'dpop+jwt',
    algorithms: ['EdDSA'],
    maxTokenAge: '60s',
    requiredClaims: ['iat', 'jti'],
  });
  assert.equal(payload.htm, made.method);
  assert.equal(payload.htu, made.htu);
  assert.equal(payload.ath, ath(made.token));
  assert.ok(payload.jti.length >= 16);
});

test('jose refuses a tampered DPoP proof', async () => {
  const forged = withClaims(made.proof, { htm: 'DELETE' });
  await assert.rejects(
    jwtVerify(forged, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['EdDSA'] }),
    errors.JWSSignatureVerificationFailed,
  );
});
