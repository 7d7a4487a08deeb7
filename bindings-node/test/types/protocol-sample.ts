// The protocol functions, typed: checked by `tsc --noEmit` (the behaviour is
// tested by vectors.test.js against spec/vectors/).
import {
  accessTokenHash,
  type Jwk,
  jwkThumbprint,
  ProtonPassError,
  signEd25519,
  type VerifiedProof,
  verifyEd25519,
  verifyProof,
  verifySignature,
} from 'protonpass-agent';

export function roundTrip(privateJwk: Jwk, publicJwk: Jwk, message: Uint8Array): string {
  const signature: Buffer = signEd25519(privateJwk, message);
  verifySignature(publicJwk, 'EdDSA', message, signature);
  verifyEd25519(Buffer.from(String(publicJwk.x), 'base64url'), message, signature);
  return jwkThumbprint(JSON.stringify(publicJwk));
}

export function check(proof: string, token: string, jkt: string, now: number): VerifiedProof | string {
  try {
    const p: VerifiedProof = verifyProof(proof, {
      method: 'GET',
      url: 'https://api.example/',
      now,
      accessToken: token,
      expectedJkt: jkt,
      allowEs256: false,
    });
    const ath: string = accessTokenHash(token);
    return p.jkt === jkt && p.iat <= now && ath.length === 43 ? p : 'unexpected';
  } catch (e) {
    if (e instanceof ProtonPassError) return `${e.code}/${e.reason ?? ''}`;
    throw e;
  }
}
