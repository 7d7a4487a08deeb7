// The core, driven through its `interop` example. run.sh builds it and passes
// its path in INTEROP_BIN; without that, it is built here.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('../../..', import.meta.url));

function build() {
  const r = spawnSync(
    'cargo',
    ['build', '--quiet', '-p', 'protonpass-agent', '--example', 'interop', '--message-format=json'],
    { cwd: repo, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`cargo build failed: ${r.stderr}`);
  for (const line of r.stdout.split('\n')) {
    if (!line) continue;
    const msg = JSON.parse(line);
    if (msg.reason === 'compiler-artifact' && msg.target.name === 'interop') return msg.executable;
  }
  throw new Error('cargo built no `interop` executable');
}

const bin = process.env.INTEROP_BIN || build();
if (!existsSync(bin)) throw new Error(`interop CLI not found at ${bin}`);

function run(args, input = '') {
  const r = spawnSync(bin, args, { input, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0 && r.status !== 1) throw new Error(`interop ${args[0]}: ${r.stderr}`);
  const out = JSON.parse(r.stdout);
  if (args[0] !== 'make' && (r.status === 0) !== out.ok) throw new Error('exit status disagrees');
  return out;
}

export const now = () => Math.floor(Date.now() / 1000);

export function make(opts = {}) {
  return run(['make', ...Object.entries(opts).flatMap(([k, v]) => [`--${k}`, String(v)])]);
}

export function verifyProof(proof, { method, url, at = now(), jkt, athToken }) {
  const args = ['verify-proof', '--method', method, '--url', url, '--now', String(at)];
  if (jkt !== undefined) args.push('--jkt', jkt);
  if (athToken !== undefined) args.push('--ath-token', athToken);
  return run(args, proof);
}

export function verifyRequest(request) {
  return run(['verify-request'], JSON.stringify(request));
}

export const ath = (token) => createHash('sha256').update(token).digest('base64url');

/** The same compact JWS with changed claims and the original signature. */
export function withClaims(jws, changes) {
  const [h, p, s] = jws.split('.');
  const claims = { ...JSON.parse(Buffer.from(p, 'base64url')), ...changes };
  return [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
}
