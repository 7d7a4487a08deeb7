'use strict';
// Known-answer tests through the installed package: RFC 8037, RFC 7638,
// RFC 9449 and both Wycheproof Ed25519 files, read from spec/vectors/ (the
// same cases as the core's core/tests/protocol/vectors.rs).
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const {
  ProtonPassError,
  accessTokenHash,
  jwkThumbprint,
  signEd25519,
  verifyEd25519,
  verifyProof,
  verifySignature,
} = require('protonpass-agent');

const VECTORS = path.join(__dirname, '..', '..', 'spec', 'vectors');
const load = (name) => JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8'));

const b64e = (bytes) => Buffer.from(bytes).toString('base64url');
/** Strict unpadded base64url: only the canonical encoding of some bytes. */
function b64d(text) {
  const bytes = Buffer.from(text, 'base64url');
  assert.equal(b64e(bytes), text, `not canonical base64url: ${text}`);
  return bytes;
}
const hex = (s) => Buffer.from(s, 'hex');
const okp = (pk) => ({ kty: 'OKP', crv: 'Ed25519', x: b64e(pk) });

/** A compact JWS as { header, signed (the signing input), sig }. */
function split(jws) {
  const [h, p, s] = jws.split('.');
  return { header: JSON.parse(b64d(h).toString('utf8')), signed: Buffer.from(`${h}.${p}`), sig: b64d(s) };
}

/** Assert that `f` throws a ProtonPassError with `code` (and `reason`); return it. */
function refused(f, code, reason) {
  let err;
  assert.throws(f, (e) => {
    err = e;
    return e instanceof ProtonPassError;
  });
  assert.equal(err.code, code, err.message);
  if (reason !== undefined) assert.equal(err.reason, reason, err.message);
  return err;
}

// --- RFC 8037 ----------------------------------------------------------------

test('RFC 8037 A.1-A.3: private JWK, public key and thumbprint', () => {
  const v = load('rfc8037-vectors.json');
  const a3 = v.A3_thumbprint;
  assert.equal(crypto.createHash('sha256').update(a3.canonical_json).digest('hex'), a3.sha256_hex);
  assert.deepEqual(b64d(a3.base64url), hex(a3.sha256_hex));
  // The public JWK, the private one (private members do not count), the JSON text.
  assert.equal(jwkThumbprint(v.A2_public_jwk), a3.base64url);
  assert.equal(jwkThumbprint(v.A1_private_jwk), a3.base64url);
  assert.equal(jwkThumbprint(JSON.stringify(v.A2_public_jwk)), a3.base64url);
  // A.1 -> A.2: what the private JWK signs verifies under the raw public key.
  const x = hex(v.raw_hex.x_public);
  assert.deepEqual(b64d(v.A2_public_jwk.x), x);
  const msg = Buffer.from('A.1');
  verifyEd25519(x, msg, signEd25519(v.A1_private_jwk, msg));
  // A plain Uint8Array works as well as a Buffer.
  verifyEd25519(new Uint8Array(x), new Uint8Array(msg), new Uint8Array(signEd25519(v.A1_private_jwk, msg)));
  // `x` must be the public key of `d`.
  refused(() => signEd25519({ ...v.A1_private_jwk, x: b64e(Buffer.alloc(32)) }, msg), 'invalid_key');
});

test('RFC 8037 A.4/A.5: the signature is reproduced byte for byte and verifies', () => {
  const v = load('rfc8037-vectors.json');
  const a4 = v.A4_sign;
  assert.equal(b64e(Buffer.from(a4.protected_header_json)), a4.protected_header_b64url);
  assert.equal(b64e(Buffer.from(a4.payload_utf8)), a4.payload_b64url);
  const sig = signEd25519(v.A1_private_jwk, Buffer.from(a4.signing_input));
  assert.ok(Buffer.isBuffer(sig));
  assert.deepEqual(sig, hex(a4.signature_hex));
  assert.equal(b64e(sig), a4.signature_b64url);
  assert.equal(`${a4.signing_input}.${b64e(sig)}`, a4.jws_compact);

  // A.5: through the raw check and the JWK check, under both names of the
  // algorithm; ES256 is not this key's algorithm.
  assert.equal(v.A5_verify.expected, 'valid');
  const jws = split(a4.jws_compact);
  assert.deepEqual(jws.header, { alg: 'EdDSA' });
  verifyEd25519(hex(v.raw_hex.x_public), jws.signed, jws.sig);
  verifySignature(v.A2_public_jwk, 'EdDSA', jws.signed, jws.sig);
  verifySignature(v.A2_public_jwk, 'Ed25519', jws.signed, jws.sig);
  refused(() => verifySignature(v.A2_public_jwk, 'ES256', jws.signed, jws.sig), 'invalid_key');
});

test('RFC 8037 derived negative cases are refused', () => {
  const v = load('rfc8037-vectors.json');
  const jwk = v.A2_public_jwk;
  const cases = v.derived_negative_cases_not_from_rfc;
  assert.equal(cases.length, 6);
  for (const c of cases) {
    assert.equal(c.expected, 'reject', c.name);
    const { header, signed, sig } = split(c.jws);
    if (c.name === 'alg_none_same_payload' || c.name === 'alg_case_variant_NONE') {
      const e = refused(() => verifySignature(jwk, header.alg, signed, sig), 'invalid_request');
      assert.match(e.message, /alg/, c.name);
      // The core's JWS reader refuses it at the allow-list.
      refused(() => verifyProof(c.jws, { method: 'GET', url: 'https://api.example/', now: 0 }), 'invalid_dpop_proof', 'alg');
    } else {
      refused(() => verifySignature(jwk, header.alg, signed, sig), 'invalid_key');
      refused(() => verifyEd25519(b64d(jwk.x), signed, sig), 'invalid_key');
    }
  }
});

// --- RFC 7638 ----------------------------------------------------------------

test('RFC 7638 thumbprints', () => {
  const vectors = load('rfc7638-vectors.json').vectors;
  assert.equal(vectors.length, 3);
  for (const t of vectors) {
    assert.equal(b64e(Buffer.from(t.sha256_octets)), t.thumbprint_b64url, t.name);
    assert.deepEqual(crypto.createHash('sha256').update(t.canonical_json).digest(), Buffer.from(t.sha256_octets), t.name);
    assert.equal(jwkThumbprint(t.jwk), t.thumbprint_b64url, t.name);
    // Optional members never change the thumbprint.
    assert.equal(jwkThumbprint({ ...t.jwk, kid: 'another', use: 'sig' }), t.thumbprint_b64url, t.name);
  }
  // The key types the core verifies with: a real signature verifies under each.
  const byName = Object.fromEntries(vectors.map((t) => [t.name, t.jwk]));
  const a4 = split(load('rfc8037-vectors.json').A4_sign.jws_compact);
  verifySignature(byName['rfc8037_A.3_okp_ed25519'], 'EdDSA', a4.signed, a4.sig);
  const p = split(load('rfc9449-vectors.json').proof_token_endpoint_section_4_1.jwt);
  verifySignature(byName.rfc9449_ec_p256_jkt, 'ES256', p.signed, p.sig);
  // RSA is not a key type the core verifies with: thumbprint yes, verification no.
  // It is refused at the key (an RSA JWK has no `crv`; with one, its type is named).
  const rsa = byName['rfc7638_3.1_rsa'];
  for (const [jwk, says] of [[rsa, /crv/], [{ ...rsa, crv: 'P-256' }, /OKP/]]) {
    const e = refused(() => verifySignature(jwk, 'ES256', p.signed, p.sig), 'invalid_key');
    assert.match(e.message, says);
    assert.doesNotMatch(e.message, /signature/);
  }
});

test('unusable JWKs are refused with invalid_key, missing arguments with invalid_request', () => {
  for (const bad of ['{"kty":"OKP"', '[]', { kty: 'XYZ', x: 'AA' }, { crv: 'Ed25519', x: 'AA' }]) {
    refused(() => jwkThumbprint(bad), 'invalid_key');
  }
  refused(() => jwkThumbprint(), 'invalid_request');
  refused(() => verifyEd25519('not bytes', Buffer.alloc(0), Buffer.alloc(64)), 'invalid_request');
});

// --- RFC 9449 ----------------------------------------------------------------

test('RFC 9449 example proofs verify at their iat', () => {
  const v = load('rfc9449-vectors.json');
  const jkt = v.jkt_vector_section_6_1.jkt;

  // Section 4.1: the proof sent to the token endpoint.
  let p = v.proof_token_endpoint_section_4_1;
  let iat = p.payload.iat;
  const req = { method: p.request.method, url: p.request.uri };
  const ok = verifyProof(p.jwt, { ...req, now: iat });
  assert.deepEqual(
    { alg: ok.alg, jkt: ok.jkt, jti: ok.jti, htm: ok.htm, htu: ok.htu, iat: ok.iat },
    { alg: 'ES256', jkt, jti: p.payload.jti, htm: 'POST', htu: p.request.uri, iat },
  );
  assert.deepEqual({ ...ok.jwk }, p.header.jwk);
  assert.equal(ok.nonce ?? null, null);
  assert.equal(ok.reason ?? null, null);

  // Their iat is from 2019: at any real time (the default clock) they are stale.
  refused(() => verifyProof(p.jwt, { ...req, now: iat + 11 }), 'invalid_dpop_proof', 'iat');
  refused(() => verifyProof(p.jwt, req), 'invalid_dpop_proof', 'iat');
  // A server that does not take ES256 refuses them at the allow-list.
  refused(() => verifyProof(p.jwt, { ...req, now: iat, allowEs256: false }), 'invalid_dpop_proof', 'alg');
  // Another method or URL than the one signed.
  refused(() => verifyProof(p.jwt, { ...req, method: 'GET', now: iat }), 'invalid_dpop_proof', 'htm');
  refused(() => verifyProof(p.jwt, { ...req, url: 'https://server.example.com/other', now: iat }), 'invalid_dpop_proof', 'htu');

  // Section 7.1: the proof sent with an access token.
  p = v.proof_resource_request_section_7_1;
  iat = p.payload.iat;
  const token = p.request.authorization.replace(/^DPoP /, '');
  const check = { method: p.request.method, url: p.request.uri, now: iat, accessToken: token, expectedJkt: jkt };
  const bound = verifyProof(p.jwt, check);
  assert.deepEqual([bound.jkt, bound.jti, bound.htu], [jkt, p.payload.jti, p.request.uri]);
  // The same proof with another token fails on ath, with another key binding on key_binding.
  refused(() => verifyProof(p.jwt, { ...check, accessToken: 'another-token' }), 'invalid_dpop_proof', 'ath');
  refused(() => verifyProof(p.jwt, { ...check, expectedJkt: 'x'.repeat(43) }), 'invalid_dpop_proof', 'key_binding');
});

test('RFC 9449 ath and jkt vectors', () => {
  const v = load('rfc9449-vectors.json');
  const ath = v.ath_vector_section_7_1;
  assert.equal(accessTokenHash(ath.access_token), ath.ath);
  assert.notEqual(accessTokenHash(`${ath.access_token}x`), ath.ath);
  const jkt = v.jkt_vector_section_6_1;
  assert.equal(jwkThumbprint(jkt.jwk), jkt.jkt);
});

// --- Wycheproof --------------------------------------------------------------

/** Whether a verification passes; a refusal must be `invalid_key`. */
function accepted(verify) {
  try {
    verify();
    return true;
  } catch (e) {
    assert.ok(e instanceof ProtonPassError, String(e));
    assert.equal(e.code, 'invalid_key', e.message);
    return false;
  }
}

/** Every case of one file through both verification paths: the counts. */
function runWycheproof(file) {
  const v = load(file);
  const counts = { valid: 0, invalid: 0, acceptable: 0 };
  const disagreements = [];
  for (const group of v.testGroups) {
    // The v1 file names the key `publicKey`, the older one `key`.
    const pk = hex((group.publicKey ?? group.key).pk);
    const jwk = group.publicKeyJwk ?? group.jwk;
    if (jwk) assert.deepEqual(b64d(jwk.x), pk);
    for (const t of group.tests) {
      const msg = hex(t.msg);
      const sig = hex(t.sig);
      const verdicts = [
        accepted(() => verifyEd25519(pk, msg, sig)),
        accepted(() => verifySignature(okp(pk), 'EdDSA', msg, sig)),
      ];
      assert.ok(t.result in counts, `${file} tc ${t.tcId}: unknown result ${t.result}`);
      counts[t.result] += 1;
      if (t.result === 'valid' && !verdicts.every(Boolean)) disagreements.push(`${file} tc ${t.tcId}: valid but refused`);
      if (t.result === 'invalid' && verdicts.some(Boolean)) disagreements.push(`${file} tc ${t.tcId}: invalid but accepted`);
    }
  }
  assert.deepEqual(disagreements, []);
  assert.equal(counts.valid + counts.invalid + counts.acceptable, v.numberOfTests, `${file}: every case was read`);
  return counts;
}

test('Wycheproof Ed25519 (v1): every valid and invalid case', () => {
  assert.deepEqual(runWycheproof('wycheproof/testvectors_v1_ed25519_test.json'), { valid: 88, invalid: 62, acceptable: 0 });
});

test('Wycheproof EdDSA: every valid and invalid case', () => {
  assert.deepEqual(runWycheproof('wycheproof/testvectors_eddsa_test.json'), { valid: 84, invalid: 61, acceptable: 0 });
});
