'use strict';
// The agent side against the real broker: device grant, stored grant,
// enrollment code, narrowing, a missing required scope, denial, error codes.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const {
  authenticateWithProton,
  ProtonPassError,
  ScopeNotGrantedError,
  ApprovalError,
  BrokerUnavailableError,
} = require('protonpass-agent');
const { startBroker, tmpdir } = require('./helpers/broker.js');

const AUD = 'https://travel.example';

test('the agent side against a real broker', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const home = tmpdir('ppa-home-');
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  const base = { broker: broker.url, audience: AUD, store: home, revokeOnExit: false };

  await t.test('first run: device grant approved through the broker CLI', async () => {
    const prompts = [];
    const session = await authenticateWithProton({
      ...base,
      agentName: 'travel-bot',
      scope: ['travel:search', 'travel:book'],
      onPrompt: (p) => {
        prompts.push(p);
        broker.cli('approve', p.userCode).catch((e) => console.error(e));
      },
    });
    assert.equal(prompts.length, 1);
    assert.match(prompts[0].userCode, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    assert.equal(typeof prompts[0].verificationUri, 'string');
    assert.ok(prompts[0].expiresIn > 0);
    assert.deepEqual([...session.scopes].sort(), ['travel:book', 'travel:search']);
    assert.ok(session.expiresAt > Date.now() / 1000);
    assert.equal(session.audiences[0], AUD);
    const h = session.headers('GET', `${AUD}/trips`);
    assert.match(h.Authorization, /^DPoP [\w-]+\.[\w-]+\.[\w-]+$/);
    assert.match(h.DPoP, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    // A proof is fresh per call.
    assert.notEqual(session.headers('GET', `${AUD}/trips`).DPoP, h.DPoP);
    await session.close();
    assert.equal(session.closed, true);
    // The grant file is private to the user.
    const files = fs.readdirSync(home);
    assert.ok(files.length > 0);
    for (const f of files) {
      const st = fs.statSync(path.join(home, f));
      if (st.isFile()) assert.equal(st.mode & 0o077, 0, `${f} is readable by others`);
    }
  });

  await t.test('second run: the stored grant, no prompt', async () => {
    const session = await authenticateWithProton({
      ...base,
      agentName: 'travel-bot',
      scope: 'travel:search',
      onPrompt: () => assert.fail('no prompt expected with a stored grant'),
    });
    assert.deepEqual(session.scopes, ['travel:search']);
    await session.close();
  });

  await t.test('a stored grant lacking a required scope: scope_not_granted', async () => {
    const err = await authenticateWithProton({
      ...base,
      agentName: 'travel-bot',
      scope: ['travel:search', 'payment:execute:under-100'],
      onPrompt: () => assert.fail('no prompt expected without extend'),
    }).catch((e) => e);
    assert.ok(err instanceof ScopeNotGrantedError, String(err));
    assert.ok(err instanceof ProtonPassError);
    assert.equal(err.code, 'scope_not_granted');
    assert.deepEqual(err.missing, ['payment:execute:under-100']);
    assert.ok(err.granted.includes('travel:search'));
    assert.match(err.message, /extend/);
  });

  await t.test('extend: a new approval for the additional scopes', async () => {
    const prompts = [];
    const session = await authenticateWithProton({
      ...base,
      agentName: 'travel-bot',
      scope: ['travel:search', 'payment:execute:under-100'],
      extend: true,
      onPrompt: (p) => {
        prompts.push(p);
        broker.cli('approve', p.userCode).catch((e) => console.error(e));
      },
    });
    assert.equal(prompts.length, 1);
    assert.ok(session.scopes.includes('payment:execute:under-100'), String(session.scopes));
    await session.close();
  });

  await t.test('enrollment code (owner-initiated grant)', async () => {
    const g = await broker.cliJson(
      'grant', 'create', '--agent', 'ci-bot', '--scope', 'travel:search', '--audience', AUD,
    );
    const session = await authenticateWithProton({
      ...base,
      store: 'memory',
      agentName: 'ci-bot',
      scope: ['travel:search'],
      enrollmentCode: g.enrollment_code,
      onPrompt: () => assert.fail('an enrollment code needs no prompt'),
    });
    assert.deepEqual(session.scopes, ['travel:search']);
    await session.close();
    // The code is one-time.
    const again = await authenticateWithProton({
      ...base,
      store: 'memory',
      profile: 'other',
      agentName: 'ci-bot',
      scope: ['travel:search'],
      enrollmentCode: g.enrollment_code,
    }).catch((e) => e);
    assert.ok(again instanceof ProtonPassError, String(again));
    assert.equal(again.code, 'invalid_grant');
  });

  await t.test('the owner narrows at approval: optional scopes dropped, required ones fail', async () => {
    const narrowed = await authenticateWithProton({
      ...base,
      store: 'memory',
      agentName: 'narrow-bot',
      scope: ['travel:search', 'travel:book'],
      required: ['travel:search'],
      onPrompt: (p) => broker.cli('approve', p.userCode, '--scope', 'travel:search').catch(console.error),
    });
    assert.deepEqual(narrowed.scopes, ['travel:search']);
    await narrowed.close();

    const err = await authenticateWithProton({
      ...base,
      store: 'memory',
      agentName: 'narrow-bot-2',
      scope: ['travel:search', 'travel:book'],
      onPrompt: (p) => broker.cli('approve', p.userCode, '--scope', 'travel:search').catch(console.error),
    }).catch((e) => e);
    assert.ok(err instanceof ScopeNotGrantedError, String(err));
    assert.deepEqual(err.missing, ['travel:book']);
    assert.deepEqual(err.granted, ['travel:search']);
  });

  await t.test('a limit narrowed by the owner', async () => {
    const s = await authenticateWithProton({
      ...base,
      store: 'memory',
      agentName: 'pay-bot',
      scope: ['payment:execute:under-500'],
      required: [],
      onPrompt: (p) =>
        broker.cli('approve', p.userCode, '--scope', 'payment:execute:under-100').catch(console.error),
    });
    assert.deepEqual(s.scopes, ['payment:execute:under-100']);
    await s.close();
  });

  await t.test('the owner denies: access_denied', async () => {
    const err = await authenticateWithProton({
      ...base,
      store: 'memory',
      agentName: 'denied-bot',
      scope: ['travel:book'],
      onPrompt: (p) => broker.cli('deny', p.userCode).catch(console.error),
    }).catch((e) => e);
    assert.ok(err instanceof ApprovalError, String(err));
    assert.equal(err.code, 'access_denied');
    assert.match(err.message, /ask the owner/);
  });

  await t.test('options from PROTONPASS_* environment variables', async () => {
    const g = await broker.cliJson(
      'grant', 'create', '--agent', 'env-bot', '--scope', 'travel:search', '--audience', AUD,
    );
    const saved = { ...process.env };
    Object.assign(process.env, {
      PROTONPASS_BROKER_URL: broker.url,
      PROTONPASS_AGENT_NAME: 'env-bot',
      PROTONPASS_ENROLLMENT_CODE: g.enrollment_code,
      PROTONPASS_HOME: home,
      PROTONPASS_PROFILE: 'env',
    });
    try {
      const s = await authenticateWithProton({ scope: ['travel:search'], audience: AUD, revokeOnExit: false });
      assert.deepEqual(s.scopes, ['travel:search']);
      await s.close(true);
      // close(true) revoked and forgot the grant: the next run must ask the owner.
      delete process.env.PROTONPASS_ENROLLMENT_CODE;
      let prompted = 0;
      const err = await authenticateWithProton({
        scope: ['travel:search'],
        audience: AUD,
        revokeOnExit: false,
        onPrompt: (p) => {
          prompted++;
          broker.cli('deny', p.userCode).catch(console.error);
        },
      }).catch((e) => e);
      assert.equal(prompted, 1);
      assert.equal(err.code, 'access_denied');
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});

test('error codes from real failures, no broker needed', async (t) => {
  await t.test('no broker URL: invalid_request saying what to set', async () => {
    const saved = process.env.PROTONPASS_BROKER_URL;
    delete process.env.PROTONPASS_BROKER_URL;
    try {
      const err = await authenticateWithProton({ scope: ['a:b'], audience: AUD, store: 'memory' }).catch((e) => e);
      assert.ok(err instanceof ProtonPassError, String(err));
      assert.equal(err.code, 'invalid_request');
      assert.match(err.message, /PROTONPASS_BROKER_URL/);
    } finally {
      if (saved !== undefined) process.env.PROTONPASS_BROKER_URL = saved;
    }
  });

  await t.test('an unreachable broker: broker_unavailable', async () => {
    const err = await authenticateWithProton({
      scope: ['a:b'], audience: AUD, store: 'memory', broker: 'http://127.0.0.1:9',
    }).catch((e) => e);
    assert.ok(err instanceof BrokerUnavailableError, String(err));
    assert.equal(err.code, 'broker_unavailable');
    assert.match(err.message, /check that the broker is running/);
  });

  await t.test('a malformed scope: invalid_scope', async () => {
    const err = await authenticateWithProton({
      scope: ['Not A Scope!'], audience: AUD, store: 'memory', broker: 'http://127.0.0.1:9',
    }).catch((e) => e);
    assert.equal(err.code, 'invalid_scope');
  });

  await t.test('a wrong argument type: invalid_request', async () => {
    const err = await authenticateWithProton({ scope: 42, audience: AUD }).catch((e) => e);
    assert.ok(err instanceof ProtonPassError, String(err));
    assert.equal(err.code, 'invalid_request');
    const err2 = await authenticateWithProton('travel:book').catch((e) => e);
    assert.equal(err2.code, 'invalid_request');
  });
});

test('a broker that requires DPoP nonces, and a device code that expires', async (t) => {
  const broker = await startBroker(['--dpop-nonce', 'true', '--device-ttl', '2s']);
  t.after(() => broker.stop());
  const base = { broker: broker.url, audience: AUD, store: 'memory', revokeOnExit: false };

  await t.test('the token endpoint nonce challenge is answered', async () => {
    const g = await broker.cliJson('grant', 'create', '--agent', 'nonce-bot', '--scope', 'travel:search', '--audience', AUD);
    const s = await authenticateWithProton({ ...base, agentName: 'nonce-bot', scope: ['travel:search'], enrollmentCode: g.enrollment_code });
    assert.deepEqual(s.scopes, ['travel:search']);
    await s.renew();
    await s.close();
  });

  await t.test('nobody approves: expired_token', async () => {
    let prompted = 0;
    const err = await authenticateWithProton({
      ...base,
      agentName: 'late-bot',
      scope: ['travel:search'],
      onPrompt: () => prompted++,
    }).catch((e) => e);
    assert.equal(prompted, 1);
    assert.ok(err instanceof ApprovalError, String(err));
    assert.equal(err.code, 'expired_token');
    assert.match(err.message, /call authenticateWithProton again/);
  });
});
