'use strict';
// The package as installed: one version everywhere, CommonJS and ESM, the
// addon that `npm install` built, the generated typings.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const pkgJson = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

test('the package resolves to this folder and loads the addon built by npm install', () => {
  const resolved = require.resolve('protonpass-agent');
  assert.equal(path.dirname(resolved), root);
  const addon = fs.readdirSync(root).filter((f) => f.endsWith('.node'));
  assert.equal(addon.length, 1, `expected one built addon, found ${addon}`);
  const p = require('protonpass-agent');
  assert.equal(typeof p.authenticateWithProton, 'function');
});

test('one version: package.json, the Cargo workspace and the addon agree', () => {
  const { check, cargoVersion } = require('../scripts/check-version.js');
  assert.equal(check(), null);
  assert.equal(cargoVersion().version, pkgJson.version);
  assert.equal(require('protonpass-agent').version(), pkgJson.version);
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'check-version.js')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('the version check fails on drift', () => {
  // A copy of the package folder with another version, beside a copy of the workspace manifest.
  const os = require('node:os');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ppa-drift-'));
  try {
    fs.copyFileSync(path.join(root, '..', 'Cargo.toml'), path.join(tmp, 'Cargo.toml'));
    const pkgDir = path.join(tmp, 'bindings-node');
    fs.mkdirSync(path.join(pkgDir, 'scripts'), { recursive: true });
    fs.copyFileSync(path.join(root, 'scripts', 'check-version.js'), path.join(pkgDir, 'scripts', 'check-version.js'));
    fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify({ ...pkgJson, version: '9.9.9' }));
    const r = spawnSync(process.execPath, [path.join(pkgDir, 'scripts', 'check-version.js')], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /9\.9\.9 differs from the Cargo version/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('ESM and CommonJS give the same objects', async () => {
  const esm = await import('protonpass-agent');
  const cjs = require('protonpass-agent');
  for (const name of ['authenticateWithProton', 'Session', 'Verifier', 'requireScope', 'ProtonPassError', 'VerificationError']) {
    assert.equal(esm[name], cjs[name], name);
  }
  assert.equal(esm.default, cjs);
  // index.mjs lists no names: every export of index.js is a named export, the same object.
  assert.deepEqual(Object.keys(esm).filter((k) => k !== 'default').sort(), Object.keys(cjs).sort());
  for (const [name, value] of Object.entries(cjs)) assert.equal(esm[name], value, name);
});

test('index.d.ts is generated with JSDoc from the Rust doc comments', () => {
  const dts = fs.readFileSync(path.join(root, 'index.d.ts'), 'utf8');
  assert.match(dts, /export declare function authenticateWithProton\(options: AuthenticateOptions\): Promise<Session>/);
  // A doc comment written in src/session.rs.
  assert.match(dts, /\* Why the agent acts \(at most 300 characters\): shown to the owner on the/);
  // What the package sets itself is not part of the typed API.
  assert.doesNotMatch(dts, /waitId|newWait|cancelWait|checkFlat/);
  assert.match(dts, /check\(request: VerifyRequest, requirement\?: Requirement \| undefined \| null\): Promise<Verdict>/);
  // The declarations index.js adds are merged in.
  assert.match(dts, /fetch\(input: string \| URL \| Request, init\?: SessionFetchInit\): Promise<Response>/);
  // Every error class is declared, those made by `errorClass` from lib/error-classes.js.
  for (const name of Object.keys(require('../lib/error-classes.js'))) {
    assert.match(dts, new RegExp(`export declare class ${name} extends \\w+ \\{`), name);
  }
  assert.match(dts, /\/\*\* @deprecated Catch `AccessDenied` or `Expired`[^\n]*\*\/\nexport declare class ApprovalError extends ProtonPassError \{\}/);
  assert.match(dts, /export declare function verifyProof\(proof: string, check: ProofCheckOptions\): VerifiedProof/);
});
