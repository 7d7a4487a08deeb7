// The core accepts DPoP proofs made by JS clients (jose, the `dpop` package),
// including under the RFC 9864 name `Ed25519`, and refuses tampered ones.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';

import * as dpop from 'dpop';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

import { ath, make, now, verifyProof, verifyRequest, withClaims } from './cli.mjs';

const URL = 'https://api.example/bookings?trip=42';
const HTU = 'https://api.example/bookings';
const TOKEN = 'an-opaque-access-token-value';

async function joseProof(alg, { token = TOKEN, key } = {}) {
  const { privateKey, publicKey } = key ?? (await generateKeyPair(alg, { extractable: true }));
  const jwk = await exportJWK(publicKey);
  const proof = await new SignJWT({ htm: 'POST', htu: HTU, ath: ath(token) })
    .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk })
    .setIssuedAt()
    .setJti(randomUUID())
    .sign(privateKey);
  return { proof, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

for (const alg of ['Ed25519', 'EdDSA', 'ES256']) {
  test(`core accepts a jose proof signed with alg ${alg}`, async () => {
    const { proof, jkt } = await joseProof(alg);
    const out = verifyProof(proof, { method: 'POST', url: URL, jkt, athToken: TOKEN });
    assert.equal(out.ok, true, JSON.stringify(out));
    assert.equal(out.alg, alg);
    assert.equal(out.jkt, jkt);
    assert.equal(out.htu, HTU);
  });
}

for (const alg of ['Ed25519', 'ES256']) {
  test(`core accepts a proof from the dpop package (${alg})`, async () => {
    const keypair = await dpop.generateKeyPair(alg);
    const proof = await dpop.generateProof(keypair, URL, 'POST', undefined, TOKEN);
    const jkt = await dpop.calculateThumbprint(keypair.publicKey);
    const out = verifyProof(proof, { method: 'POST', url: URL, jkt, athToken: TOKEN });
    assert.equal(out.ok, true, JSON.stringify(out));
    assert.equal(out.alg, alg);
    assert.equal(out.jkt, jkt);
  });
}

test('core refuses tampered jose and dpop proofs', async () => {
  const keypair = await dpop.generateKeyPair('Ed25519');
  const proofs = [
    (await joseProof('Ed25519')).proof,
    await dpop.generateProof(keypair, URL, 'POST', undefined, TOKEN),
  ];
  for (const proof of proofs) {
    const forged = withClaims(proof, { htm: 'GET' });
    const out = verifyProof(forged, { method: 'GET', url: URL, athToken: TOKEN });
    assert.deepEqual([out.ok, out.code, out.reason], [false, 'invalid_dpop_proof', 'signature']);
  }
});

test('core refuses a dpop-package proof for another URL, method or token', async () => {
  const keypair = await dpop.generateKeyPair('ES256');
  const proof = await dpop.generateProof(keypair, URL, 'POST', undefined, TOKEN);
  const cases = [
    [{ method: 'PUT', url: URL, athToken: TOKEN }, 'htm'],
    [{ method: 'POST', url: 'https://api.example/other', athToken: TOKEN }, 'htu'],
    [{ method: 'POST', url: URL, athToken: 'another-token' }, 'ath'],
    [{ method: 'POST', url: URL, athToken: TOKEN, at: now() - 600 }, 'iat'],
  ];
  for (const [check, reason] of cases) {
    const out = verifyProof(proof, check);
    assert.deepEqual([out.ok, out.reason], [false, reason], JSON.stringify(check));
  }
});

test('core accepts a whole request: core-issued token bound to a dpop-package key', async () => {
  // The agent's key lives in JS; the core, as broker, binds the token to it.
  const keypair = await dpop.generateKeyPair('Ed25519');
  const jkt = await dpop.calculateThumbprint(keypair.publicKey);
  const made = make({ 'bind-jkt': jkt });
  assert.equal(made.jkt, jkt);
  const proof = await dpop.generateProof(keypair, made.url, made.method, undefined, made.token);
  const request = {
    jwks: made.jwks, issuer: made.issuer, audience: made.audience,
    authorization: `DPoP ${made.token}`, dpop: proof, method: made.method, url: made.url,
    now: now(),
  };
  const ok = verifyRequest(request);
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.equal(ok.jkt, jkt);
  assert.equal(ok.claims.jkt, jkt);
  // The core's own agent key signed `made.proof`: the token is not bound to it.
  const other = verifyRequest({ ...request, dpop: made.proof, now: made.now });
  assert.deepEqual([other.ok, other.reason], [false, 'key_binding']);
  // Two DPoP headers are refused whatever they hold.
  const twice = verifyRequest({ ...request, dpop: [proof, proof] });
  assert.deepEqual([twice.ok, twice.reason], [false, 'header_count']);
});

test('core accepts a whole request from a jose broker and a jose agent', async () => {
  const broker = await generateKeyPair('EdDSA', { extractable: true });
  const agent = await generateKeyPair('Ed25519', { extractable: true });
  const agentJwk = await exportJWK(agent.publicKey);
  const jwks = {
    keys: [{ ...(await exportJWK(broker.publicKey)), kid: 'js-1', use: 'sig', alg: 'EdDSA' }],
  };
  const token = await new SignJWT({
    client_id: 'js-agent', scope: 'calendar:read', gid: 'grant-js',
    cnf: { jkt: await calculateJwkThumbprint(agentJwk, 'sha256') }, act: { sub: 'js-agent' },
  })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: 'js-1' })
    .setIssuer('https://broker.example')
    .setSubject('owner-carol')
    .setAudience('https://api.example')
    .setIssuedAt()
    .setExpirationTime('10m')
    .setJti(randomUUID())
    .sign(broker.privateKey);
  const { proof } = await joseProof('Ed25519', { token, key: agent });
  const out = verifyRequest({
    jwks, issuer: 'https://broker.example', audience: 'https://api.example',
    authorization: `DPoP ${token}`, dpop: proof, method: 'POST', url: URL, now: now(),
  });
  assert.equal(out.ok, true, JSON.stringify(out));
  assert.equal(out.claims.scope, 'calendar:read');
  assert.equal(out.claims.sub, 'owner-carol');
});
