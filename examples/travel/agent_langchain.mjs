// The travel agent on LangChain.js: `authenticateWithProton` and the package's
// LangChain tool (`createProtonPassTool`, which signs each call with
// `session.fetch`), plus `ask_person` and `pay_with_approval` (a payment
// through `session.fetch` with `stepUp`: above the token's limit the owner is
// asked, and the call is sent once more with the one-time token), in a
// tool-calling loop. The chat model is scripted (deterministic, no model
// service): it reads the task and the tool results and answers with tool
// calls, as a real model would. The travel logic and the story are in
// trip.mjs, shared with the AutoGPT-style agent.
//
// Needs @langchain/core (a peer dependency of the package): installed next to
// this file, or the one the package's own tests use.
//
// Run by run.sh; alone: node agent_langchain.mjs --broker URL --api URL [--stepup-code CODE]
import path from 'node:path';
import { createRequire } from 'node:module';
import { decide, options, pkgDir, request, runStory, taskOf } from './trip.mjs';

const require = createRequire(import.meta.url);
const { createProtonPassTool, apiUrl } = require(path.join(pkgDir, 'langchain.js'));
const requireLc = (m) => {
  try {
    return require(m);
  } catch {
    return createRequire(path.join(pkgDir, 'package.json'))(m);
  }
};
const { BaseChatModel } = requireLc('@langchain/core/language_models/chat_models');
const { AIMessage, HumanMessage, SystemMessage } = requireLc('@langchain/core/messages');
const { tool } = requireLc('@langchain/core/tools');

const say = (text) => console.log(`[langchain.js] ${text}`);
const opt = options('agent_langchain.mjs', 'travel-langchain-js');

// A tool's answer: "HTTP <status>\n<body>" or "error <code>: <message>".
function parse(text) {
  const m = /^HTTP (\d+)\n([\s\S]*)$/.exec(String(text));
  if (!m) return { error: String(text) };
  let body = m[2];
  try {
    body = JSON.parse(body);
  } catch {
    // not JSON
  }
  return { status: Number(m[1]), body };
}

let calls = 0;
const call = (name, args) => new AIMessage({ content: '', tool_calls: [{ name, args, id: `call_${++calls}`, type: 'tool_call' }] });

// The scripted model: the shared decision, as tool calls.
class ScriptedTravelModel extends BaseChatModel {
  _llmType() {
    return 'scripted-travel-agent';
  }
  bindTools() {
    return this;
  }
  async _generate(messages) {
    return { generations: [{ text: '', message: this.next(messages) }] };
  }
  next(messages) {
    const lastHuman = messages.findLastIndex((m) => m instanceof HumanMessage || m._getType?.() === 'human');
    const done = messages
      .slice(lastHuman + 1)
      .filter((m) => m._getType?.() === 'tool')
      .map((m) => (m.name === 'ask_person' ? { answer: String(m.content) } : parse(m.content)));
    const d = decide(taskOf(messages[lastHuman].content), done);
    if (d.report !== undefined) return new AIMessage(d.report);
    if (d.ask !== undefined) return call('ask_person', { question: d.ask });
    const { stepUp, ...c } = d.call;
    if (stepUp) return call('pay_with_approval', { path: c.path, amount: stepUp.amount, currency: stepUp.currency, payee: stepUp.payee, reason: stepUp.bindingMessage });
    return call('call_api', c);
  }
}

const askPerson = tool(
  async ({ question }) => {
    say(`CONFIRM agent asks the person: ${question}`);
    say('        the person answers: yes (answered automatically in the demo)');
    return 'yes';
  },
  {
    name: 'ask_person',
    description: 'Ask the person to confirm before booking or paying. Returns their answer.',
    schema: { type: 'object', properties: { question: { type: 'string' } }, required: ['question'] },
  },
);

// A payment the owner may be asked to approve: POST to the path with
// `session.fetch(url, { stepUp })`; the answer is shaped as call_api's.
const payWithApproval = (session) =>
  tool(
    async ({ path: p, amount, currency, payee, reason }) => {
      const url = apiUrl(opt.audience, p);
      if (url === null) return `error: ${p} is outside the API ${opt.audience}`;
      const r = await request(session, url, { method: 'POST', reason, stepUp: { amount, currency, payee, bindingMessage: reason } });
      return r.error ? `error ${r.error}` : `HTTP ${r.status}\n${JSON.stringify(r.body)}`;
    },
    {
      name: 'pay_with_approval',
      description:
        'Make a payment (POST to a path of the API). If it is above what your access allows, the owner is asked to approve exactly this payment; on approval it is sent once more. Returns the status and the response body.',
      schema: {
        type: 'object',
        properties: {
          path: { type: 'string', description: 'Path relative to the API, e.g. "charges?amount=450&key=flight-1"' },
          amount: { type: 'string', description: 'The amount, a decimal string' },
          currency: { type: 'string', description: 'ISO 4217 code, e.g. EUR' },
          payee: { type: 'string', description: 'Who is paid' },
          reason: { type: 'string', description: 'What the payment is for, shown to the owner' },
        },
        required: ['path', 'amount', 'currency', 'payee', 'reason'],
      },
    },
  );

const agentFor = (session) => {
  const tools = { call_api: createProtonPassTool(session, { baseUrl: `${opt.audience}/` }), ask_person: askPerson, pay_with_approval: payWithApproval(session) };
  const model = new ScriptedTravelModel({}).bindTools(Object.values(tools));
  const history = [new SystemMessage('You are a travel agent. Use call_api for the travel API; ask_person before booking; pay_with_approval for a payment above your limit.')];
  return async (task) => {
    say(`TASK    ${task.text}`);
    history.push(new HumanMessage(task.text));
    const results = [];
    for (let i = 0; i < 12; i++) {
      const ai = await model.invoke(history);
      history.push(ai);
      if (!ai.tool_calls?.length) {
        say(`REPORT  ${ai.content}`);
        return { report: String(ai.content), results };
      }
      for (const tc of ai.tool_calls) {
        const paying = tc.name === 'pay_with_approval';
        if (tc.name === 'call_api' || paying) {
          say(`CALL    ${tc.args.method ?? 'POST'} /travel/${tc.args.path}${tc.args.body ? ` ${JSON.stringify(tc.args.body)}` : ''}${paying ? ' (may ask the owner)' : ''}`);
        }
        const msg = await tools[tc.name].invoke(tc);
        if (tc.name === 'call_api' || paying) {
          const r = parse(msg.content);
          results.push(r);
          const ok = r.status && r.status < 400;
          say(`${ok ? 'GOT    ' : 'REFUSED'} -> ${r.error ?? `${r.status} ${JSON.stringify(r.body)}`.slice(0, 300)}`);
        }
        history.push(msg);
      }
    }
    throw new Error('the agent did not finish its task');
  };
};

if (!(await runStory(opt, agentFor, say))) process.exit(1);
say(`DONE    searched, confirmed, booked, paid; refused above the limit; cut off after revocation${opt['stepup-code'] ? '; a payment above it approved once by the owner; the day budget spent' : ''}.`);
