// Passkeys on the owner's dashboard in headless Chromium, with the Chrome
// DevTools Protocol's virtual authenticator: two-step sign-in turned on with
// an authenticator app, a passkey added on /account, sign-out, sign-in with
// the password and the passkey; another key under the same credential id and
// a clone with an older signature counter are refused; removing the passkey
// needs the password. A high-risk permission is approved with the passkey.
// The broker is reached as http://localhost:PORT
// (WebAuthn accepts no IP address as relying party id).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Agent, BIN, launchBrowser, shot, startBroker } from './kit.mjs';

const PASSWORD = 'a long owner passphrase';

/** A free loopback port (closed again before the broker binds it). */
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** RFC 6238 code (SHA-1, 6 digits, 30 s) for a base32 setup key. */
function totp(key, t = Date.now() / 1000) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of key.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const secret = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
  const h = createHmac('sha1', secret).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

describe('passkeys', () => {
  let broker;
  let browser;
  let page;
  let cdp;
  let authenticator;
  let credential;

  const addAuthenticator = async () =>
    (
      await cdp.send('WebAuthn.addVirtualAuthenticator', {
        options: {
          protocol: 'ctap2',
          transport: 'usb',
          hasResidentKey: true,
          hasUserVerification: true,
          isUserVerified: true,
          automaticPresenceSimulation: true,
        },
      })
    ).authenticatorId;

  const signIn = async () => {
    await page.goto(`${broker.issuer}/login`);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/login\/code/);
  };

  const signOut = async () => {
    await page.getByRole('button', { name: /Sign out/ }).click();
    await page.waitForURL(/\/login$/);
  };

  before(async () => {
    const port = await freePort();
    broker = await startBroker({ PROTONPASS_BROKER_ISSUER: `http://localhost:${port}` }, `127.0.0.1:${port}`);
    assert.equal(broker.issuer, `http://localhost:${port}`);
    browser = await launchBrowser();
    page = await browser.context.newPage();
    cdp = await browser.context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    authenticator = await addAuthenticator();
  });

  after(async () => {
    await browser?.close();
    await broker?.stop();
  });

  test('two-step sign-in on, then a passkey added on /account', async () => {
    await page.goto(broker.setup);
    await page.getByLabel('New password').fill(PASSWORD);
    await page.getByLabel('The same password again').fill(PASSWORD);
    await page.getByRole('button', { name: 'Save password and sign in' }).click();
    await page.waitForURL(/\/agents$/);

    await page.goto(`${broker.issuer}/account`);
    await page.getByLabel('Your password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
    const key = (await page.locator('code.secret').textContent()).trim();
    await page.getByLabel('Code from the app').fill(totp(key));
    await page.getByRole('button', { name: 'Turn on two-step sign-in' }).click();
    await page.getByRole('link', { name: 'Done' }).waitFor();

    await page.goto(`${broker.issuer}/account`);
    assert.match(await page.textContent('main'), /No passkey yet/);
    // The passkey page is served with the one script the policy allows.
    const r = await page.request.get(`${broker.issuer}/account`);
    assert.match(r.headers()['content-security-policy'], /script-src 'self';/);
    assert.doesNotMatch(await r.text(), /<script>|<script [^>]*>[^<]/, 'no inline script');

    await page.locator('form[action="/account/passkey/new"]').getByLabel('Your password').fill(PASSWORD);
    // A current code too (the next time step's: enabling spent this one).
    await page.locator('form[action="/account/passkey/new"]').getByLabel(/Code from your authenticator/).fill(totp(key, Date.now() / 1000 + 30));
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await page.getByLabel('Name').fill('Laptop key');
    await shot(page, 'passkey-01-add');
    await page.getByRole('button', { name: 'Create the passkey' }).click();
    await page.waitForURL(/\/account$/);
    assert.match(await page.textContent('main'), /Laptop key/);
    await shot(page, 'passkey-02-account');

    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].rpId, 'localhost');
  });

  test('sign-in with the password and the passkey', async () => {
    await signOut();
    await signIn();
    await shot(page, 'passkey-03-sign-in');
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(/\/agents$/);
    credential = (await cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator })).credentials[0];
    assert.ok(credential.signCount >= 1);
  });

  test('another key under the same credential id is refused, and so is a clone with an older counter', async () => {
    await signOut();
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: authenticator });

    // An authenticator that claims the credential id but holds another key.
    const other = await addAuthenticator();
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await cdp.send('WebAuthn.addCredential', {
      authenticatorId: other,
      credential: {
        credentialId: credential.credentialId,
        isResidentCredential: false,
        rpId: 'localhost',
        privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
        signCount: credential.signCount + 10,
      },
    });
    await signIn();
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.textContent('[role=alert]'), /passkey was not accepted/);
    assert.match(page.url(), /\/login\/code/);
    await shot(page, 'passkey-04-refused');
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: other });

    // A copy of the real key whose counter is behind the one the broker saw.
    const clone = await addAuthenticator();
    await cdp.send('WebAuthn.addCredential', {
      authenticatorId: clone,
      credential: { ...credential, signCount: 0 },
    });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForFunction(() => /passkey was not accepted/.test(document.querySelector('[role=alert]')?.textContent));
    assert.match(page.url(), /\/login\/code/);
    await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: clone });

    // The real authenticator, as it was, still signs in.
    authenticator = await addAuthenticator();
    await cdp.send('WebAuthn.addCredential', { authenticatorId: authenticator, credential });
    await page.getByRole('button', { name: 'Use a passkey' }).click();
    await page.waitForURL(/\/agents$/);
  });

  test('a high-risk permission is approved with the passkey instead of a code', async () => {
    const SHOP = 'https://shop.example';
    const scopes = join(broker.data, 'shop-scopes.toml');
    writeFileSync(
      scopes,
      '[[scope]]\nname = "orders:read"\ndescription = "Read orders"\nrisk = "low"\n\n' +
        '[[scope]]\nname = "payment:execute"\ndescription = "Pay for orders"\nrisk = "high"\n',
    );
    execFileSync(BIN, ['--data', broker.data, 'resource', 'add', SHOP, '--scopes', scopes]);
    const agent = new Agent(broker.issuer, 'shop-bot');
    const d = await agent.startDevice('orders:read payment:execute', SHOP);
    assert.equal(d.status, 200, JSON.stringify(d.body));
    await page.goto(d.body.verification_uri_complete);
    await page.getByRole('button', { name: /code matches/ }).click();
    await page.getByRole('button', { name: 'Approve with a passkey' }).click();
    await page.getByText(/may now act for you/).waitFor();
    const t = await agent.poll(d.body.device_code);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.deepEqual(t.body.scope.split(' ').sort(), ['orders:read', 'payment:execute']);
  });

  test('removing the passkey needs the password; the activity log shows each step', async () => {
    await page.goto(`${broker.issuer}/account`);
    const remove = page.locator('form[action="/account/passkey/remove"]');
    await remove.locator('input[name=password]').fill('not the password');
    await remove.getByRole('button', { name: 'Remove' }).click();
    assert.match(await page.textContent('main'), /did not match/);
    await page.goto(`${broker.issuer}/account`);
    await remove.locator('input[name=password]').fill(PASSWORD);
    await remove.getByRole('button', { name: 'Remove' }).click();
    await page.waitForURL(/\/account$/);
    assert.match(await page.textContent('main'), /No passkey yet/);

    await page.goto(`${broker.issuer}/audit`);
    const text = await page.textContent('main');
    for (const event of ['passkey_enrolled', 'login_second_factor', 'second_factor_confirmed', 'passkey_removed']) {
      assert.match(text, new RegExp(event), `${event} in the activity log`);
    }
  });
});
