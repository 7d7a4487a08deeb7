// An AutoGPT-style agent that uses a code host's API through the broker's
// gateway: goals, then a loop in which the "brain" answers with thoughts and
// one command, the agent executes it and feeds the result back. Its
// `http_request` command names the API's real URLs
// (`https://api.code-host.example/...`) and sends them with `session.fetch`:
// the session routes each one to the broker's gateway, which checks the
// agent's scoped token and injects the owner's key. The agent never holds it.
//
// The brain is scripted (deterministic, no model service): it lists the
// commits, opens an issue, then tries a repository its access does not cover
// (refused by the gateway with 403) and reports.
//
//   node agent_autogpt.mjs --broker URL --code ENROLLMENT_CODE
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
const { authenticateWithProton, ProtonPassError } = require(require('../travel/node-package.cjs'));

const API = 'https://api.code-host.example';
const say = (text) => console.log(`[autogpt]   ${text}`);

const { values: opt } = parseArgs({
  options: {
    broker: { type: 'string', default: process.env.PROTONPASS_BROKER_URL },
    code: { type: 'string' },
    name: { type: 'string', default: 'repo-triager' },
  },
});
if (!opt.broker || !opt.code) {
  console.error('usage: node agent_autogpt.mjs --broker URL --code ENROLLMENT_CODE');
  process.exit(2);
}

function commands(session) {
  return {
    async http_request({ method, url, body, reason }) {
      const init = { method, reason };
      if (body !== undefined) {
        init.body = JSON.stringify(body);
        init.headers = { 'content-type': 'application/json' };
      }
      try {
        const r = await session.fetch(url, init);
        return { status: r.status, body: await r.json().catch(() => null) };
      } catch (e) {
        if (e instanceof ProtonPassError) return { error: `${e.code}: ${e.message}` };
        throw e;
      }
    },
    async task_complete({ summary }) {
      return { summary };
    },
  };
}

// The scripted brain: thoughts and the next command, from the observations.
function think(observations) {
  const n = observations.length;
  const last = observations[n - 1]?.result;
  const thoughts = (text, plan) => ({ text, reasoning: 'one step at a time', plan, criticism: 'none' });
  const http = (method, url, body) => ({ name: 'http_request', args: { method, url, body, reason: 'triage me/proj' } });
  if (n === 0) return { thoughts: thoughts('List the recent commits.', ['commits', 'issue', 'check payroll']), command: http('GET', `${API}/repos/me/proj/commits`) };
  if (n === 1) {
    const title = `Triage: ${last.body.length} commits to review`;
    return { thoughts: thoughts('Open an issue for the review.', ['issue', 'check payroll']), command: http('POST', `${API}/repos/me/proj/issues`, { title }) };
  }
  if (n === 2) return { thoughts: thoughts('Also look at me/payroll.', ['check payroll']), command: http('GET', `${API}/repos/me/payroll/commits`) };
  const refused = last.status === 403;
  return {
    thoughts: thoughts(refused ? 'My access does not cover me/payroll: I stop there.' : 'Done.', []),
    command: { name: 'task_complete', args: { summary: `opened issue #${observations[1].result.body.number}; me/payroll ${refused ? 'refused (403)' : 'read'}` } },
  };
}

const session = await authenticateWithProton({
  broker: opt.broker, audience: API, scope: ['repo:read:proj', 'repo:write:proj'],
  agentName: opt.name, store: 'memory', enrollmentCode: opt.code,
});
say(`session for ${API}: ${session.scopes.join(' ')}; requests go to ${session.route(`${API}/`)}`);
const cmds = commands(session);
const observations = [];
const statuses = [];
for (let step = 0; step < 6; step++) {
  const { thoughts, command } = think(observations);
  say(`THOUGHT ${thoughts.text}`);
  const result = await cmds[command.name](command.args);
  if (command.name === 'task_complete') {
    say(`DONE ${result.summary}`);
    break;
  }
  say(`COMMAND ${command.args.method} ${command.args.url} -> ${result.error ?? `HTTP ${result.status}`}`);
  statuses.push(result.status);
  observations.push({ command, result });
}
await session.close();
if (statuses.join(',') !== '200,201,403') {
  console.error(`unexpected statuses ${statuses}`);
  process.exit(1);
}
