'use strict';
// The error classes have the names and codes of spec/08-errors.md section 8.4,
// the same as the Python package's; the former names still work.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const pkg = require('protonpass-agent');

function specTable() {
  const md = fs.readFileSync(path.join(__dirname, '..', '..', 'spec', '08-errors.md'), 'utf8');
  const block = md.split('<!-- table: sdk-error-classes')[1].split('<!-- /table -->')[0];
  return block
    .split('\n')
    .filter((l) => /^\| `/.test(l))
    .map((l) => {
      const [cls, codes] = l.split('|').slice(1, 3);
      return [cls.trim().replace(/`/g, ''), [...codes.matchAll(/`([a-z_]+)`/g)].map((m) => m[1])];
    });
}

test('error classes are named as in the spec, with its codes', () => {
  const rows = specTable();
  assert.ok(rows.length >= 12, JSON.stringify(rows));
  for (const [name, codes] of rows) {
    const C = pkg[name];
    assert.equal(typeof C, 'function', `${name} is exported`);
    assert.equal(C.name, name);
    for (const code of codes) {
      const e = new C(code, 'm');
      assert.ok(e instanceof pkg.ProtonPassError && e instanceof Error);
      assert.equal(e.name, name);
      assert.equal(e.code, code);
    }
  }
  assert.equal(pkg.Revoked, pkg.InvalidGrant);
});

test('the former names still catch the same errors', () => {
  assert.equal(pkg.ScopeNotGrantedError, pkg.ScopeNotGranted);
  assert.equal(pkg.BrokerUnavailableError, pkg.BrokerUnavailable);
  assert.equal(pkg.InvalidGrantError, pkg.InvalidGrant);
  assert.ok(new pkg.AccessDenied('access_denied', 'no') instanceof pkg.ApprovalError);
  assert.ok(new pkg.Expired('expired_token', 'late') instanceof pkg.ApprovalError);
});
