// The owner's dashboard in headless Chromium against the real broker: first-run
// setup and sign-in, approval of a real device request with one scope unticked
// and a 1-day lifetime, denial, revocation that the agent feels, the activity
// page with a verified chain, and the negative cases (no form token, hostile
// agent names, framing). Each page is saved as a screenshot.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { Agent, claims, launchBrowser, shot, startBroker } from './kit.mjs';

const PASSWORD = 'a long owner passphrase';
const TRAVEL = 'https://travel.example';

describe('owner dashboard', () => {
  let broker;
  let browser;
  let page;
  // Shared between the steps below, in order.
  const approved = {};
  const enrolled = {};

  before(async () => {
    // Interval 0: the agent may poll right after the owner acts (no slow_down wait).
    broker = await startBroker({ PROTONPASS_BROKER_DEVICE_INTERVAL: '0' });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('dialog', (d) => {
      throw new Error(`a dialog opened: ${d.message()}`);
    });
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
  });

  test('first run: the setup link sets the password, then sign-out and sign-in', async () => {
    await page.goto(broker.setup);
    await shot(page, '01-setup');
    await page.getByLabel('New password').fill(PASSWORD);
    await page.getByLabel('The same password again').fill(PASSWORD);
    await page.getByRole('button', { name: 'Save password and sign in' }).click();
    await page.waitForURL(`${broker.issuer}/agents`);
    assert.match(await page.textContent('main'), /No agent may act for you/);

    // The link works once.
    const again = await page.request.get(broker.setup);
    assert.equal(again.status(), 404);

    await page.getByRole('button', { name: /Sign out/ }).click();
    await page.waitForURL(/\/login$/);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    assert.match(await page.textContent('[role=alert]'), /do not match/);
    await page.getByLabel('Password').fill(PASSWORD);
    await shot(page, '02-sign-in');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${broker.issuer}/agents`);

    const cookies = await browser.context.cookies(broker.issuer);
    const session = cookies.find((c) => c.name === 'pp_session');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
  });

  test('approve a real device request with one scope unticked and a 1-day lifetime', async () => {
    const agent = new Agent(broker.issuer, 'travel-bot');
    const d = await agent.startDevice('travel:book travel:search payment:execute:under-100', TRAVEL);
    assert.equal(d.status, 200, JSON.stringify(d.body));
    assert.equal(d.body.verification_uri, `${broker.issuer}/device`);
    assert.equal((await agent.poll(d.body.device_code)).body.error, 'authorization_pending');

    // The owner follows verification_uri_complete: the code is filled in, to confirm.
    await page.goto(d.body.verification_uri_complete);
    assert.equal(await page.inputValue('input[name=user_code]'), d.body.user_code);
    await shot(page, '03-device-confirm-code');
    await page.getByRole('button', { name: /code matches/ }).click();

    const main = page.locator('main');
    await main.getByText('Book travel on travel.example').waitFor();
    assert.match(await main.textContent(), /travel-bot/);
    assert.match(await main.textContent(), /not verified/);
    assert.match(await main.textContent(), /Search travel on travel\.example/);
    assert.match(await main.textContent(), /Pay under 100 on travel\.example/);
    assert.ok((await main.textContent()).includes(agent.thumbprint.slice(0, 12)), 'the key that asks');
    assert.equal(await page.isChecked('input[type=radio][value="3600"]'), true, '1 hour by default');
    await shot(page, '04-device-approve');
    // The same page at phone width.
    await page.setViewportSize({ width: 390, height: 844 });
    await shot(page, '05-device-approve-phone');
    await page.setViewportSize({ width: 1100, height: 800 });

    await page.uncheck('input[name=scope][value="travel:search"]');
    await page.check('input[type=radio][value="86400"]');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByText(/may now act for you for 1 day/).waitFor();
    await shot(page, '06-device-approved');

    const t = await agent.poll(d.body.device_code);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.deepEqual(t.body.scope.split(' ').sort(), ['payment:execute:under-100', 'travel:book']);
    assert.equal(t.body.audience, TRAVEL);
    const c = claims(t.body.access_token);
    assert.deepEqual(c.scope.split(' ').sort(), ['payment:execute:under-100', 'travel:book']);
    assert.equal(c.cnf.jkt, agent.thumbprint);
    assert.equal(t.body.grant_expires_at - c.iat, 86400, 'a 1-day grant');
    Object.assign(approved, { agent, token: t.body, claims: c });
  });

  test('deny a request entered by hand (any case, spaces): the agent gets access_denied', async () => {
    const agent = new Agent(broker.issuer, 'mail-bot');
    const d = await agent.startDevice('mail:send', 'https://mail.example');
    await page.goto(`${broker.issuer}/device`);
    const typed = d.body.user_code.toLowerCase().replace('-', ' ');
    await page.getByLabel('Code').fill(typed);
    await shot(page, '07-device-enter-code');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('mail-bot').first().waitFor();
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.getByText(/You denied/).waitFor();
    const r = await agent.poll(d.body.device_code);
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'access_denied');
  });

  test('agents page lists the grant and its token; revoking the grant cuts the agent off', async () => {
    const { agent, token, claims: c } = approved;
    await page.goto(`${broker.issuer}/agents`);
    const card = page.locator('.grant', { hasText: token.grant_id });
    await card.waitFor();
    const text = await card.textContent();
    assert.ok(text.includes(c.jti), 'the live access token is listed');
    assert.ok(text.includes(agent.thumbprint.slice(0, 12)), 'the short key thumbprint');
    assert.match(text, /Book travel on travel\.example/);
    assert.ok(!/Search travel/.test(text), 'the unticked scope is not granted');
    await shot(page, '08-agents');

    // Before: the agent can renew.
    const renewed = await agent.refresh(token.refresh_token);
    assert.equal(renewed.status, 200, JSON.stringify(renewed.body));

    await card.getByRole('button', { name: 'Revoke this grant' }).click();
    await page.getByText(/grant was revoked/).waitFor();
    assert.equal(await page.locator('.grant', { hasText: token.grant_id }).count(), 0);
    await shot(page, '09-agents-revoked');

    // The revocation is in the feed by the time the page has reloaded...
    const feed = await (await fetch(`${broker.issuer}/revocations?after=0`)).json();
    assert.ok(feed.revocations.some((e) => e.gid === token.grant_id), JSON.stringify(feed));
    // ...and the agent's next use fails.
    const next = await agent.refresh(renewed.body.refresh_token);
    assert.equal(next.status, 400);
    assert.equal(next.body.error, 'invalid_grant');
  });

  test('a pre-authorized grant shows its enrollment code once', async () => {
    await page.goto(`${broker.issuer}/agents`);
    await page.getByLabel('Agent name').fill('nightly-report');
    await page.getByLabel(/What it may do/).fill('reports:read');
    await page.getByLabel(/Service it may use/).fill('https://reports.example');
    await page.getByRole('button', { name: 'Create and show the code' }).click();
    const code = (await page.locator('code.secret').textContent()).trim();
    assert.match(code, /^ec_/);
    await shot(page, '10-enrollment-code');
    const agent = new Agent(broker.issuer, 'nightly-report');
    const r = await agent.token({
      grant_type: 'urn:ietf:params:oauth:grant-type:pre-authorized_code',
      'pre-authorized_code': code,
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await page.goto(`${broker.issuer}/agents`);
    assert.ok((await page.textContent('main')).includes('nightly-report'));
    Object.assign(enrolled, { agent, token: r.body });
  });

  test('the activity page shows the events and a verified chain; export is JSON Lines', async () => {
    await page.goto(`${broker.issuer}/audit`);
    const main = await page.textContent('main');
    assert.match(main, /Chain verified/);
    for (const e of ['approve', 'deny', 'device_grant', 'revoke', 'login', 'password_set', 'grant_create']) {
      assert.ok(main.includes(e), `event ${e} is listed`);
    }
    await shot(page, '11-activity');
    await page.selectOption('select[name=event]', 'revoke');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForURL(/event=revoke/);
    const rows = await page.locator('table.audit tbody tr').count();
    assert.ok(rows >= 1);
    assert.equal(await page.locator('table.audit tbody tr', { hasNotText: 'revoke' }).count(), 0);
    await shot(page, '12-activity-filtered');

    const ex = await page.request.get(`${broker.issuer}/audit/export`);
    assert.equal(ex.status(), 200);
    assert.match(ex.headers()['content-type'], /application\/x-ndjson/);
    const lines = (await ex.text()).trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.length >= 5);
    for (let i = 1; i < lines.length; i++) assert.ok(lines[i].seq > lines[i - 1].seq, 'oldest first');
    assert.ok(lines.some((l) => l.event === 'approve'));
  });

  test('a form posted without its token is refused and changes nothing', async () => {
    const r = await page.request.post(`${broker.issuer}/agents/revoke-agent`, {
      form: { agent: 'nightly-report' },
      maxRedirects: 0,
    });
    assert.equal(r.status(), 403);
    assert.match(await r.text(), /refused/);
    const wrong = await page.request.post(`${broker.issuer}/agents/revoke-agent`, {
      form: { agent: 'nightly-report', csrf: 'x'.repeat(32) },
      maxRedirects: 0,
    });
    assert.equal(wrong.status(), 403);
    await page.goto(`${broker.issuer}/agents`);
    assert.ok((await page.textContent('main')).includes('nightly-report'), 'still allowed');
    assert.equal((await enrolled.agent.refresh(enrolled.token.refresh_token)).status, 200);
  });

  test('cutting off an agent revokes everything it holds', async () => {
    const { agent } = enrolled;
    const exchange = () =>
      agent.token({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: enrolled.token.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        resource: 'https://reports.example',
      });
    assert.equal((await exchange()).status, 200, 'works before');
    await page.goto(`${broker.issuer}/agents`);
    const card = page.locator('.agent-card', { hasText: 'nightly-report' });
    await card.getByRole('button', { name: 'Cut off this agent' }).click();
    await page.getByText(/Everything of this agent was revoked/).waitFor();
    assert.ok(!(await page.textContent('main')).includes('nightly-report'));
    const r = await exchange();
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error, 'invalid_grant', JSON.stringify(r.body));
  });

  test('an agent name with <script> and a javascript: URL is shown inert', async () => {
    const hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
    const agent = new Agent(broker.issuer, hostile);
    const d = await agent.startDevice('travel:book', 'javascript:window.__pwned=3');
    assert.equal(d.status, 200, JSON.stringify(d.body));
    await page.goto(d.body.verification_uri_complete);
    await page.getByRole('button', { name: /code matches/ }).click();
    const name = page.locator('main strong.agent');
    await name.waitFor();
    assert.equal(await name.textContent(), hostile, 'the name is shown as text');
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await page.locator('main script, main img').count(), 0);
    assert.equal(await page.locator('a[href^="javascript:"]').count(), 0);
    assert.ok((await page.textContent('main')).includes('javascript:window.__pwned=3'));
    await shot(page, '13-hostile-agent-name');
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.getByText(/You denied/).waitFor();
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
  });

  test('the pages cannot be framed', async () => {
    // A page on another origin (loopback) that tries to frame the dashboard.
    const framer = createServer((_, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><h1>framer</h1><iframe id="f" src="${broker.issuer}/agents" width="600" height="400"></iframe>`);
    });
    await new Promise((r) => framer.listen(0, '127.0.0.1', r));
    try {
      const { port } = framer.address();
      const blocked = page.waitForEvent('response', (r) => r.url() === `${broker.issuer}/agents`);
      await page.goto(`http://127.0.0.1:${port}/`);
      const resp = await blocked;
      assert.match(resp.headers()['content-security-policy'], /frame-ancestors 'none'/);
      assert.equal(resp.headers()['x-frame-options'], 'DENY');
      await page.waitForLoadState('load');
      const child = page.frames().find((f) => f !== page.mainFrame());
      assert.ok(child, 'the iframe exists');
      // Chromium replaces a refused frame with an error page: none of the dashboard renders.
      const content = await child.content().catch(() => '');
      assert.ok(!content.includes('Agents'), `framed content: ${content.slice(0, 200)}`);
      assert.ok(!content.includes('Sign out'));
      await shot(page, '14-framing-refused');
    } finally {
      framer.close();
    }
  });
});
