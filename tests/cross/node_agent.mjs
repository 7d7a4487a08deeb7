// An agent using the Node package, driven line by line on stdin so that a test
// in another language can use its session:
//   node node_agent.mjs --broker URL --audience URL [--audience URL...] --name NAME --code ENROLLMENT_CODE
// prints {"event":"ready","scopes":[...]} once authenticated, then answers each
// stdin line (JSON) with one stdout line (JSON):
//   {"op":"fetch","method":"GET","url":U}    -> {"status":N,"body":TEXT} or {"error":CODE,"message":...}
//   {"op":"headers","method":"GET","url":U}  -> {"headers":{authorization,dpop}}
//   {"op":"close"}                           -> {"closed":true} and exits
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const { authenticateWithProton, ProtonPassError } = require(require('../../examples/travel/node-package.cjs'));
const { values: opt } = parseArgs({
  options: {
    broker: { type: 'string' },
    audience: { type: 'string', multiple: true },
    name: { type: 'string' },
    code: { type: 'string' },
    scope: { type: 'string', default: 'travel:search' },
  },
});
const out = (v) => process.stdout.write(`${JSON.stringify(v)}\n`);

let session;
try {
  session = await authenticateWithProton({
    scope: opt.scope.split(' '),
    audience: opt.audience[0],
    broker: opt.broker,
    agentName: opt.name,
    enrollmentCode: opt.code,
    store: 'memory',
  });
  for (const aud of opt.audience.slice(1)) await session.addAudience(aud);
} catch (e) {
  out({ event: 'failed', error: e.code, message: e.message });
  process.exit(1);
}
out({ event: 'ready', scopes: session.scopes });

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const req = JSON.parse(line);
  try {
    if (req.op === 'fetch') {
      const r = await session.fetch(req.url, { method: req.method });
      out({ status: r.status, body: await r.text() });
    } else if (req.op === 'headers') {
      out({ headers: session.headers(req.method, req.url) });
    } else if (req.op === 'close') {
      try {
        await session.close();
      } catch {
        // Already revoked by the owner: nothing left to revoke.
      }
      out({ closed: true });
      break;
    } else {
      out({ error: 'unknown_op', message: String(req.op) });
    }
  } catch (e) {
    if (!(e instanceof ProtonPassError)) throw e;
    out({ error: e.code, message: e.message });
  }
}
process.exit(0);
