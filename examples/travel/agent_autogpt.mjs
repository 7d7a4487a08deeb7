// A travel agent in the AutoGPT style: goals, then a loop in which the "brain"
// answers with thoughts (text, reasoning, plan, criticism) and one command,
// the agent executes the command and feeds the result back as an observation.
// Its HTTP command goes through `session.fetch`: every call carries the
// DPoP-bound access token and a fresh proof signed with the agent's key; a
// payment above the token's limit asks the owner (`stepUp`) and is sent once
// more with the one-time token.
//
// The brain is scripted (deterministic, no model service); the travel logic
// and the story (trip, refusal above the limit, revocation, step-up, budget)
// are in trip.mjs, shared with the LangChain.js agent.
//
// Run by run.sh; alone: node agent_autogpt.mjs --broker URL --api URL [--stepup-code CODE]
import { createRequire } from 'node:module';
import { decide, options, pkgDir, request, runStory } from './trip.mjs';

const require = createRequire(import.meta.url);
const { apiUrl } = require(`${pkgDir}/langchain.js`);

const say = (text) => console.log(`[autogpt]   ${text}`);
const opt = options('agent_autogpt.mjs', 'travel-autogpt');

// The commands the brain may choose, AutoGPT style: name, arguments, result.
function commands(session) {
  return {
    async http_request(a) {
      // The path the brain chose stays under the API once normalised
      // (`/../x`, `%2e%2e`, `..%2f`, backslashes are refused).
      const url = apiUrl(opt.audience, a.path);
      if (url === null) return { error: `${a.path} is outside the API ${opt.audience}` };
      return request(session, url, a);
    },
    async ask_user({ question }) {
      say(`CONFIRM asks the person: ${question}`);
      say('        the person answers: yes (answered automatically in the demo)');
      return { answer: 'yes' };
    },
  };
}

// The brain: the shared decision, as AutoGPT's thoughts and one command.
function think(goal, observations) {
  const d = decide(goal, observations.map((o) => o.result));
  if (d.report !== undefined) return { thoughts: d.thoughts, command: { name: 'task_complete', args: { summary: d.report } } };
  if (d.ask !== undefined) return { thoughts: d.thoughts, command: { name: 'ask_user', args: { question: d.ask } } };
  return { thoughts: d.thoughts, command: { name: 'http_request', args: d.call } };
}

const agentFor = (session) => async (goal) => {
  const cmds = commands(session);
  say(`GOAL    ${goal.text}`);
  const observations = [];
  for (let cycle = 1; cycle <= 12; cycle++) {
    const { thoughts, command } = think(goal, observations);
    say(`THINK   ${thoughts.text}${thoughts.plan.length ? ` (plan: ${thoughts.plan.join(' -> ')})` : ''}`);
    if (command.name === 'task_complete') {
      say(`REPORT  ${command.args.summary}`);
      return { report: command.args.summary, results: observations.map((o) => o.result) };
    }
    const a = command.args;
    if (command.name === 'http_request') {
      say(`CALL    ${a.method} /travel/${a.path}${a.body ? ` ${JSON.stringify(a.body)}` : ''}${a.stepUp ? ' (may ask the owner)' : ''}`);
    }
    const result = await cmds[command.name](a);
    if (command.name === 'http_request') {
      const ok = result.status && result.status < 400;
      const shown = result.error ?? JSON.stringify(result.body);
      say(`${ok ? 'GOT    ' : 'REFUSED'} -> ${result.status ?? ''} ${shown.slice(0, 300)}${!ok && result.www ? `\n[autogpt]           WWW-Authenticate: ${result.www}` : ''}`);
    }
    observations.push({ command, result });
  }
  throw new Error('the agent did not complete its goal');
};

if (!(await runStory(opt, agentFor, say))) process.exit(1);
say(`DONE    searched, confirmed, booked, paid; refused above the limit; cut off after revocation${opt['stepup-code'] ? '; a payment above it approved once by the owner; the day budget spent' : ''}.`);
