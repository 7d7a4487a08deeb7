'use strict';
// The package version must equal the Cargo workspace version (one version for
// the whole project). Run by the install script and the tests; exits non-zero
// on drift.
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function tomlVersion(text, table) {
  // The `version = "..."` line inside `[table]` (enough TOML for our manifests).
  let inTable = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('[')) {
      inTable = line === `[${table}]`;
      continue;
    }
    const m = inTable && line.match(/^version\s*=\s*"([^"]+)"/);
    if (m) return m[1];
  }
  return undefined;
}

/** The Cargo version the addon is built with, and where it was read. */
function cargoVersion() {
  const workspace = path.join(root, '..', 'Cargo.toml');
  if (fs.existsSync(workspace)) {
    const text = fs.readFileSync(workspace, 'utf8');
    if (/members\s*=\s*\[[^\]]*"bindings-node"/.test(text)) {
      return { version: tomlVersion(text, 'workspace.package'), from: workspace };
    }
  }
  const standalone = path.join(root, 'standalone', 'Cargo.toml');
  if (fs.existsSync(standalone)) {
    return { version: tomlVersion(fs.readFileSync(standalone, 'utf8'), 'package'), from: standalone };
  }
  return { version: undefined, from: 'no Cargo manifest found' };
}

function check() {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const cargo = cargoVersion();
  if (!cargo.version || cargo.version !== pkg.version) {
    return `package.json version ${pkg.version} differs from the Cargo version ${cargo.version} (${cargo.from}): set package.json "version" to the workspace version`;
  }
  return null;
}

module.exports = { check, cargoVersion };

if (require.main === module) {
  const problem = check();
  if (problem) {
    console.error(`protonpass-agent: ${problem}`);
    process.exit(1);
  }
  console.log(`protonpass-agent: version ${cargoVersion().version} matches the Cargo workspace`);
}
