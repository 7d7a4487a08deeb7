// A typed program using the package: checked by `tsc --noEmit`, and compiled
// and run by dispose.test.js (its `await using` block must revoke).
import express from 'express';
import {
  authenticateWithProton,
  type DevicePrompt,
  type Identity,
  ProtonPassError,
  ScopeNotGranted,
  AccessDenied,
  ScopeNotGrantedError,
  Session,
  VerificationError,
  Verifier,
  requireScope,
  sendRejection,
  spend,
  type SpendResult,
  type Verdict,
} from 'protonpass-agent';

export function api(issuer: string, audience: string): express.Express {
  const verifier = new Verifier({ issuer, audience, baseUrl: 'https://api.example', owner: 'alice', requireNonce: false, maxStaleness: 30 });
  const app = express();
  app.use(express.json());
  app.post('/bookings', verifier.requireScope('travel:book'), (req, res) => {
    const who: Identity = (req as express.Request & { agent: Identity }).agent;
    res.json({ by: who.agent, scopes: who.scopes, expires: who.expiresAt });
  });
  app.post('/pay', requireScope('payment:execute', { verifier, amount: (req) => req.body?.amount }), async (req, res) => {
    const who: Identity = (req as express.Request & { agent: Identity }).agent;
    try {
      const r: SpendResult = await verifier.spend(who, {
        scope: 'payment:execute', amount: String(req.body?.amount), currency: 'EUR', idempotencyKey: String(req.body?.order),
      });
      res.json({ remaining: r.remaining ?? null, refunded: r.refunded });
    } catch (e) {
      if (e instanceof VerificationError) sendRejection(res, e);
      else throw e;
    }
  });
  app.post(
    '/charge',
    verifier.requireScope('payment:execute', { amount: (req) => String(req.query.amount) }),
    spend('payment:execute', {
      verifier, amount: (req) => String(req.query.amount), currency: 'EUR', idempotencyKey: (req) => String(req.query.key),
    }),
    (req, res) => {
      const r: SpendResult = (req as express.Request & { spend: SpendResult }).spend;
      res.json({ remaining: r.remaining ?? null });
    },
  );
  app.get('/raw', async (req, res) => {
    try {
      const id = await verifier.verify({ method: req.method, url: `${verifier.baseUrl}${req.url}`, headers: req.headers });
      res.json(id);
    } catch (e) {
      if (e instanceof VerificationError) {
        res.status(e.status).set('WWW-Authenticate', e.wwwAuthenticate ?? 'DPoP').end();
      } else throw e;
    }
  });
  app.get('/check', async (req, res) => {
    const verdict: Verdict = await verifier.check(
      { method: req.method, url: `${verifier.baseUrl}${req.url}`, headers: [['authorization', String(req.headers.authorization)]] },
      { scope: 'travel:search' },
    );
    res.status(verdict.rejection?.status ?? 200).json(verdict.identity ?? null);
  });
  return app;
}

export async function agent(broker: string, audience: string, enrollmentCode: string, target: string): Promise<boolean> {
  let kept: Session | undefined;
  {
    await using session = await authenticateWithProton({
      scope: ['travel:search'],
      audience,
      broker,
      agentName: 'typed-bot',
      store: 'memory',
      enrollmentCode,
      revokeOnExit: false,
      reason: 'typed sample',
      onPrompt: (p: DevicePrompt) => console.error(p.userCode, p.verificationUri, p.expiresIn),
    });
    kept = session;
    const scopes: string[] = session.scopes;
    const expiresAt: number = session.expiresAt;
    const headers: Record<string, string> = session.headers('GET', target);
    if (!scopes.length || expiresAt <= 0 || !headers.DPoP) throw new Error('unexpected session');
    const proofs = Array.from({ length: 200 }, () => session.headers('GET', target));
    process.stdout.write(`${JSON.stringify(proofs)}\n`);
    const r: Response = await session.fetch(target, { method: 'GET', reason: 'check the trip' });
    if (r.status !== 200) throw new Error(`status ${r.status}`);
  }
  return kept.closed;
}

export function describe(e: unknown): string {
  if (e instanceof ScopeNotGranted) return `missing ${e.missing.join(' ')}; granted ${e.granted.join(' ')}`;
  if (e instanceof ScopeNotGrantedError) return `(deprecated name) missing ${e.missing.join(' ')}`;
  if (e instanceof AccessDenied) return `denied: ${e.message}`;
  if (e instanceof ProtonPassError) return `${e.code}${e.reason ? `/${e.reason}` : ''}: ${e.message}`;
  return String(e);
}

if (require.main === module) {
  const { BROKER, AUDIENCE, CODE, TARGET } = process.env;
  agent(BROKER!, AUDIENCE!, CODE!, TARGET!).then(
    (closed) => {
      process.stdout.write(`${JSON.stringify({ closed })}\n`);
    },
    (e) => {
      console.error(describe(e));
      process.exit(1);
    },
  );
}

// Amounts are never numbers: the types refuse them (and so does the code, with
// a TypeError). Never called; checked by tsc only.
export function numbersAreNotAmounts(verifier: Verifier, who: Identity): void {
  // @ts-expect-error a number is not an amount
  requireScope('payment:execute', { verifier, amount: 0.1 });
  // @ts-expect-error a function returning a number is not one either
  verifier.requireScope('payment:execute', { amount: () => 12 });
  // @ts-expect-error nor for spend
  void verifier.spend(who, { scope: 'payment:execute', amount: 0.1, currency: 'EUR', idempotencyKey: 'k' });
  // @ts-expect-error nor for the spend middleware
  spend('payment:execute', { verifier, amount: 5, currency: 'EUR', idempotencyKey: 'k' });
  void verifier.check({ method: 'POST', url: 'https://api.example/pay', headers: [] }, { scope: 'payment:execute', amount: '12.50' });
}
