'use strict';
// Builds the addon from source with the napi-rs CLI and cargo (the install
// script). Inside the repository it builds the workspace crate; from a packed
// tarball it builds the standalone manifest under `standalone/`.
//
//   node scripts/build.js [--debug]      (or PROTONPASS_NODE_PROFILE=debug)
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');
const { check } = require('./check-version.js');

const root = path.resolve(__dirname, '..');

function fail(msg) {
  console.error(`protonpass-agent: ${msg}`);
  process.exit(1);
}

const problem = check();
if (problem) fail(problem);

let host;
try {
  host = execFileSync('rustc', ['-vV'], { encoding: 'utf8' }).match(/^host: (\S+)/m)[1];
} catch {
  fail('building the addon needs a Rust toolchain (rustc and cargo on PATH): install it with rustup or your package manager, then run npm install again');
}

function napiCli() {
  try {
    const pkg = require.resolve('@napi-rs/cli/package.json', { paths: [root] });
    return path.join(path.dirname(pkg), require(pkg).bin.napi);
  } catch {
    return null;
  }
}

let cli = napiCli();
if (!cli) {
  // `npm install ./bindings-node` from another project links the folder and
  // skips its dependencies: fetch the build tool here first.
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['install', '--ignore-scripts', '--omit=dev', '--no-audit', '--no-fund'], {
    cwd: root,
    stdio: 'inherit',
  });
  cli = r.status === 0 ? napiCli() : null;
  if (!cli) fail('cannot find @napi-rs/cli: run `npm install` inside the protonpass-agent package folder');
}

const debug = process.argv.includes('--debug') || process.env.PROTONPASS_NODE_PROFILE === 'debug';
const workspace = path.join(root, '..', 'Cargo.toml');
const inWorkspace =
  fs.existsSync(workspace) && /members\s*=\s*\[[^\]]*"bindings-node"/.test(fs.readFileSync(workspace, 'utf8'));
const manifest = inWorkspace ? path.join(root, 'Cargo.toml') : path.join(root, 'standalone', 'Cargo.toml');
if (!fs.existsSync(manifest)) fail(`no Cargo manifest at ${manifest}`);

// header.d.ts, with the error classes made by `errorClass` in
// lib/error-classes.js declared in place of its ERROR-CLASSES comment: each
// with the doc comment and base class it has there.
function errorClassDeclarations() {
  const source = fs.readFileSync(path.join(root, 'lib', 'error-classes.js'), 'utf8');
  const made = /(\/\*\*(?:(?!\*\/)[^])*\*\/)\nconst (\w+) = errorClass\('(\w+)'(?:, (\w+))?\);/g;
  const out = [];
  for (const [, doc, name, jsName, base] of source.matchAll(made)) {
    if (name !== jsName) fail(`lib/error-classes.js: ${name} is named '${jsName}'`);
    out.push(`${doc}\nexport declare class ${name} extends ${base || 'ProtonPassError'} {}`);
  }
  if (out.length === 0) fail('lib/error-classes.js: no errorClass declaration found');
  return out.join('\n');
}
const marker = /^\/\/ ERROR-CLASSES:.*\n(?:\/\/.*\n)*/m;
const headerSource = fs.readFileSync(path.join(root, 'header.d.ts'), 'utf8');
if (!marker.test(headerSource)) fail('header.d.ts: no ERROR-CLASSES comment');
const header = headerSource.replace(marker, () => `${errorClassDeclarations()}\n`);
const args = [
  cli, 'build',
  '--platform',
  '--manifest-path', manifest,
  '--package-json-path', path.join(root, 'package.json'),
  '--output-dir', root,
  '--js', 'native.js',
  '--dts', 'index.d.ts',
  '--dts-header', header,
  '--no-dts-cache',
  '--no-const-enum',
];
if (!debug) args.push('--release');
if (!inWorkspace && !process.env.CARGO_TARGET_DIR) args.push('--target-dir', path.join(root, 'target'));

// napi builds for an explicit triple: say it once so that cargo, maturin and
// napi share `target/<triple>/` instead of compiling everything twice.
const env = { ...process.env, CARGO_BUILD_TARGET: process.env.CARGO_BUILD_TARGET || host };
console.error(`protonpass-agent: building the addon (${debug ? 'debug' : 'release'}, ${env.CARGO_BUILD_TARGET}) from ${path.relative(process.cwd(), manifest) || manifest}`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
if (r.status !== 0) fail(`the addon build failed (exit ${r.status}); see the cargo output above`);
