// Test kit for the dashboard's browser tests: start the real broker binary on
// 127.0.0.1:0 with a throw-away data directory, act as an agent (Ed25519 key,
// DPoP proofs made with node:crypto), and launch Debian's Chromium headless.

import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SHOTS = process.env.SCREENSHOT_DIR || join(ROOT, 'artifacts', 'screenshots');
const TARGET = process.env.CARGO_TARGET_DIR || join(ROOT, 'target');
export const BIN = process.env.PROTONPASS_BROKER_BIN || join(TARGET, 'debug', 'protonpass-broker');

/** Start the broker; resolves with its issuer URL and the one-time setup link it prints. */
export async function startBroker(env = {}, addr = '127.0.0.1:0') {
  const data = mkdtempSync(join(tmpdir(), 'pp-dashboard-'));
  const child = spawn(BIN, ['--data', data, 'serve', '--addr', addr], {
    env: { ...process.env, PROTONPASS_BROKER_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  let issuer;
  let setup;
  for await (const line of lines) {
    if (!issuer) {
      const first = JSON.parse(line);
      if (first.event !== 'listening') throw new Error(`unexpected first line ${line}`);
      issuer = first.issuer;
      continue;
    }
    // Standard output is a pipe, not a terminal: the broker writes the
    // one-time link to an owner-only file in the data directory and says so.
    if (line.includes('one-time link')) {
      setup = readFileSync(join(data, 'setup-link'), 'utf8').trim();
      break;
    }
  }
  // Keep draining stdout so the broker never blocks on a full pipe.
  lines.on('line', () => {});
  if (!issuer || !setup) throw new Error('the broker did not print its address and setup link');
  return {
    issuer,
    setup,
    data,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      rmSync(data, { recursive: true, force: true });
    },
  };
}

const b64u = (buf) => Buffer.from(buf).toString('base64url');

/** An agent: its own Ed25519 key, DPoP proofs, and the broker's token endpoint. */
export class Agent {
  constructor(issuer, name) {
    this.issuer = issuer;
    this.name = name;
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    this.privateKey = privateKey;
    const { kty, crv, x } = publicKey.export({ format: 'jwk' });
    this.jwk = { kty, crv, x };
    this.nonce = undefined;
  }

  /** RFC 7638 thumbprint of the public key. */
  get thumbprint() {
    const { crv, kty, x } = this.jwk;
    return b64u(createHash('sha256').update(JSON.stringify({ crv, kty, x })).digest());
  }

  proof(method, url) {
    const header = { typ: 'dpop+jwt', alg: 'EdDSA', jwk: this.jwk };
    const payload = { jti: randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000) };
    if (this.nonce) payload.nonce = this.nonce;
    const input = `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(payload))}`;
    return `${input}.${b64u(sign(null, Buffer.from(input), this.privateKey))}`;
  }

  async form(path, params, headers = {}) {
    const r = await fetch(`${this.issuer}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(params).toString(),
    });
    return { status: r.status, headers: r.headers, body: await r.json() };
  }

  /** RFC 8628 device authorization request, signed with a DPoP proof so the
   * request is bound to this key (the approval page shows its fingerprint). */
  startDevice(scope, resource) {
    const p = { client_id: this.name, scope };
    if (resource) p.resource = resource;
    const url = `${this.issuer}/oauth/device_authorization`;
    return this.form('/oauth/device_authorization', p, { DPoP: this.proof('POST', url) });
  }

  /** A token request with a fresh DPoP proof, answering the nonce challenge once. */
  async token(params) {
    const url = `${this.issuer}/oauth/token`;
    for (let i = 0; i < 2; i++) {
      const r = await this.form('/oauth/token', params, { DPoP: this.proof('POST', url) });
      const n = r.headers.get('dpop-nonce');
      if (n) this.nonce = n;
      if (r.body.error !== 'use_dpop_nonce') return r;
    }
    throw new Error('the nonce challenge did not settle');
  }

  poll(deviceCode) {
    return this.token({
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: deviceCode,
      client_id: this.name,
    });
  }

  refresh(refreshToken) {
    return this.token({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: this.name });
  }
}

/** The claims of a JWT (unverified; the Rust suites verify signatures). */
export const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

/** Debian's Chromium, headless, with a fresh profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'pp-chromium-'));
  mkdirSync(SHOTS, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Save a full-page screenshot as SHOTS/NAME.png. */
export const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
