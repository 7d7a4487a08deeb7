'use strict';
// Runs `node --test` on every test/**/*.test.{js,mjs} file, after checking
// that the pattern matched some: an empty match must fail, not pass.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const testDir = path.join(root, 'test');

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : walk(p);
    return /\.test\.(c|m)?js$/.test(e.name) ? [p] : [];
  });
}

const files = walk(testDir).sort();
if (files.length === 0) {
  console.error(`no test files matched test/**/*.test.{js,mjs} under ${testDir}`);
  process.exit(1);
}
console.error(`node --test: ${files.length} test files`);
const r = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-timeout=120000', ...process.argv.slice(2), ...files],
  { stdio: 'inherit', cwd: root },
);
process.exit(r.status === null ? 1 : r.status);
