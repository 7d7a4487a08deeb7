'use strict';
// Benchmarks (`make bench`): producing the headers of one request with our
// Session against the `dpop` and `jose` packages, and verifying one
// DPoP-bound request with our Verifier against the same checks with `jose`.
// Runs against the real broker on 127.0.0.1 port 0.
//
//   npm run bench   (builds the release addon first; BENCH_N=... sets the sample size)
const { createHash, randomUUID } = require('node:crypto');
const { authenticateWithProton } = require('protonpass-agent');
const { startBroker } = require('../test/helpers/broker.js');
const { startApi } = require('../test/helpers/api.js');

const N = Number(process.env.BENCH_N || 3000);
const WARM = Math.min(300, N);

async function timeIt(label, n, fn) {
  for (let i = 0; i < WARM; i++) await fn(i);
  const samples = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(WARM + i);
    samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  samples.sort();
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const r = { label, mean, p50: samples[Math.floor(n * 0.5)], p99: samples[Math.floor(n * 0.99)], max: samples[n - 1] };
  console.log(
    `${label}: p50 ${r.p50.toFixed(1)} µs, mean ${r.mean.toFixed(1)} µs, p99 ${r.p99.toFixed(1)} µs, max ${r.max.toFixed(0)} µs (n=${n})`,
  );
  return r;
}

const b64u = (buf) => Buffer.from(buf).toString('base64url');

async function main() {
  const jose = await import('jose');
  const dpop = await import('dpop');
  const broker = await startBroker();
  const api = await startApi(broker.url, { verifier: { followFeed: true } });
  try {
    const g = await broker.cliJson('grant', 'create', '--agent', 'bench-bot', '--scope', 'travel:search', '--audience', api.url);
    const session = await authenticateWithProton({
      broker: broker.url, audience: api.url, store: 'memory', agentName: 'bench-bot',
      scope: ['travel:search'], enrollmentCode: g.enrollment_code, revokeOnExit: false, backgroundRenewal: false,
    });
    const url = `${api.url}/trips`;
    const token = session.headers('GET', url).Authorization.slice('DPoP '.length);
    const ath = b64u(createHash('sha256').update(token).digest());

    console.log('# headers for one request (Authorization + fresh DPoP proof with ath)');
    const ours = await timeIt('protonpass-agent session.headers', N, () => session.headers('GET', url));
    const kp = await dpop.generateKeyPair('Ed25519');
    const viaDpop = await timeIt('dpop generateProof (Ed25519)', N, () => dpop.generateProof(kp, url, 'GET', undefined, token));
    const jk = await jose.generateKeyPair('Ed25519', { extractable: true });
    const jwk = await jose.exportJWK(jk.publicKey);
    const viaJose = await timeIt('jose SignJWT proof (Ed25519)', N, () =>
      new jose.SignJWT({ htm: 'GET', htu: url, ath, jti: randomUUID() })
        .setProtectedHeader({ alg: 'Ed25519', typ: 'dpop+jwt', jwk })
        .setIssuedAt()
        .sign(jk.privateKey),
    );

    console.log('# verifying one DPoP-bound request (token, proof, binding, replay)');
    const proofs = Array.from({ length: N + WARM }, () => Object.entries(session.headers('GET', url)));
    const verifier = api.verifier;
    let refused = 0;
    const ourVerify = await timeIt('protonpass-agent Verifier.check', N, async (i) => {
      const v = await verifier.check({ method: 'GET', url, headers: proofs[i] });
      if (v.rejection) refused++;
    });
    // The same checks with jose: token signature and claims against the JWKS,
    // proof signature with its embedded key, typ, htm, htu, iat, ath, the
    // key binding (cnf.jkt) and a replay cache.
    const jwks = jose.createLocalJWKSet(await (await fetch(`${broker.url}/jwks.json`)).json());
    const proofsJose = Array.from({ length: N + WARM }, () => session.headers('GET', url).DPoP);
    const seen = new Set();
    const joseVerify = await timeIt('jose equivalent checks', N, async (i) => {
      const { payload: claims } = await jose.jwtVerify(token, jwks, {
        issuer: broker.url, audience: api.url, typ: 'at+jwt', algorithms: ['EdDSA', 'Ed25519'],
      });
      const proof = proofsJose[i];
      const { payload: p, protectedHeader: h } = await jose.jwtVerify(proof, jose.EmbeddedJWK, {
        typ: 'dpop+jwt', algorithms: ['EdDSA', 'Ed25519'], maxTokenAge: 300,
      });
      if (p.htm !== 'GET' || p.htu !== url) throw new Error('htm/htu');
      if (p.ath !== b64u(createHash('sha256').update(token).digest())) throw new Error('ath');
      if ((await jose.calculateJwkThumbprint(h.jwk, 'sha256')) !== claims.cnf.jkt) throw new Error('jkt');
      if (seen.has(p.jti)) throw new Error('replay');
      seen.add(p.jti);
    });
    if (refused) throw new Error(`${refused} valid requests were refused`);
    const proofsVerify = Array.from({ length: N + WARM }, () => session.headers('GET', url));
    const ourVerifyThrowing = await timeIt('protonpass-agent Verifier.verify', N, (i) =>
      verifier.verify({ method: 'GET', url, headers: proofsVerify[i] }),
    );

    console.log('# ratios (how many times faster protonpass-agent is)');
    // Medians: the machine is shared, and a few scheduler stalls move means a lot.
    const ratio = (a, b) => `${(b.p50 / a.p50).toFixed(1)}x on medians, ${(b.mean / a.mean).toFixed(1)}x on means`;
    console.log(`headers vs dpop: ${ratio(ours, viaDpop)} (target >= 3x)`);
    console.log(`headers vs jose: ${ratio(ours, viaJose)} (target >= 2.5x)`);
    console.log(`verification (check) vs jose: ${ratio(ourVerify, joseVerify)} (target >= 6x)`);
    console.log(`verification (verify) vs jose: ${ratio(ourVerifyThrowing, joseVerify)} (target >= 6x)`);
    await session.close();
  } finally {
    await api.close();
    await broker.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
