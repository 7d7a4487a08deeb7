// The travel agent on LangChain.js: `authenticateWithProton` and the package's
// LangChain tool (`createProtonPassTool`, which signs each call with
// `session.fetch`), plus an `ask_person` tool, in a tool-calling loop. The chat
// model is scripted (deterministic, no model service): it reads the task and
// the tool results and answers with tool calls, as a real model would.
//
// Needs @langchain/core (a peer dependency of the package): installed next to
// this file, or the one the package's own tests use.
//
// Run by run.sh; alone: node agent_langchain.mjs --broker URL --api URL
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ownerRequest, ownerRevokes } from './owner.mjs';

const require = createRequire(import.meta.url);
const pkgDir = require('./node-package.cjs');
const { authenticateWithProton } = require(pkgDir);
const { createProtonPassTool } = require(path.join(pkgDir, 'langchain.js'));
const requireLc = (m) => {
  try {
    return require(m);
  } catch {
    return createRequire(path.join(pkgDir, 'package.json'))(m);
  }
};
const { BaseChatModel } = requireLc('@langchain/core/language_models/chat_models');
const { AIMessage, HumanMessage, SystemMessage, ToolMessage } = requireLc('@langchain/core/messages');
const { tool } = requireLc('@langchain/core/tools');

const SCOPES = ['travel:search', 'travel:book', 'payment:execute:under-500'];
const say = (text) => console.log(`[langchain.js] ${text}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { values: opt } = parseArgs({
  options: {
    broker: { type: 'string', default: process.env.PROTONPASS_BROKER_URL },
    api: { type: 'string' },
    name: { type: 'string', default: 'travel-langchain-js' },
    home: { type: 'string', default: process.env.PROTONPASS_HOME },
    channel: { type: 'string', default: process.env.TRAVEL_DEMO_CHANNEL },
  },
});
if (!opt.api) {
  console.error('usage: node agent_langchain.mjs --api URL [--broker URL] [--name NAME] [--home DIR]');
  process.exit(2);
}
const audience = `${opt.api.replace(/\/+$/, '')}/travel`;

// The tool's answer: "HTTP <status>\n<body>" or "error <code>: <message>".
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
    const task = String(messages[lastHuman].content).toLowerCase();
    const done = messages.slice(lastHuman + 1).filter((m) => m._getType?.() === 'tool').map((m) => (m.name === 'ask_person' ? { answer: String(m.content) } : parse(m.content)));
    const failed = done.find((r) => r.error || r.status >= 400);
    if (failed) {
      const code = failed.body?.detail?.error ?? failed.body?.error;
      return new AIMessage(
        code === 'insufficient_scope'
          ? 'The API refused the payment (HTTP 403 insufficient_scope): my permission only covers payments under 500.'
          : `I could not continue: ${failed.error ?? `HTTP ${failed.status} ${JSON.stringify(failed.body)}`}`,
      );
    }
    if (task.includes('upgrade')) {
      if (!done.length) return call('call_api', { method: 'POST', path: 'payments', body: { amount: 645, for: 'upgrade' }, reason: 'pay the hotel upgrade' });
      return new AIMessage(`Upgrade paid: ${JSON.stringify(done[0].body)}`);
    }
    if (task.includes('check')) {
      if (!done.length) return call('call_api', { method: 'GET', path: 'flights?to=CDG', reason: 'check for cheaper flights' });
      return new AIMessage('Flights checked; nothing cheaper.');
    }
    if (done.length === 0) return call('call_api', { method: 'GET', path: 'flights?to=CDG', reason: 'find flights to Paris' });
    if (done.length === 1) return call('call_api', { method: 'GET', path: 'hotels?city=Paris', reason: 'find a hotel in Paris' });
    const flight = done[0].body.flights.reduce((a, b) => (b.price < a.price ? b : a));
    const hotel = done[1].body.hotels.reduce((a, b) => (b.price_per_night < a.price_per_night ? b : a));
    const total = flight.price + hotel.nights * hotel.price_per_night;
    if (done.length === 2) {
      return call('ask_person', { question: `Book ${flight.flight} and ${hotel.nights} nights at ${hotel.hotel}, ${total} EUR in total?` });
    }
    if (done.length === 3) {
      if (done[2].answer !== 'yes') return new AIMessage('The person declined; nothing booked.');
      return call('call_api', { method: 'POST', path: 'bookings', body: { flight: flight.flight, hotel: hotel.hotel, total }, reason: 'book the confirmed itinerary' });
    }
    if (done.length === 4) {
      return call('call_api', { method: 'POST', path: 'payments', body: { amount: total, booking: done[3].body.booking }, reason: `pay booking ${done[3].body.booking}` });
    }
    return new AIMessage(`Booked ${done[3].body.booking} and paid ${done[4].body.paid} EUR.`);
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

async function runTask(model, tools, history, task) {
  say(`TASK    ${task}`);
  history.push(new HumanMessage(task));
  for (let i = 0; i < 12; i++) {
    const ai = await model.invoke(history);
    history.push(ai);
    if (!ai.tool_calls?.length) {
      say(`REPORT  ${ai.content}`);
      return String(ai.content);
    }
    for (const tc of ai.tool_calls) {
      if (tc.name === 'call_api') say(`CALL    ${tc.args.method} /travel/${tc.args.path}${tc.args.body ? ` ${JSON.stringify(tc.args.body)}` : ''}`);
      const msg = await tools[tc.name].invoke(tc);
      if (tc.name === 'call_api') {
        const r = parse(msg.content);
        const ok = r.status && r.status < 400;
        say(`${ok ? 'GOT    ' : 'REFUSED'} -> ${r.error ?? `${r.status} ${JSON.stringify(r.body)}`.slice(0, 300)}`);
      }
      history.push(msg);
    }
  }
  throw new Error('the agent did not finish its task');
}

say(`ASKING  for ${SCOPES.join(' ')} on ${audience}`);
const session = await authenticateWithProton({
  scope: SCOPES,
  audience,
  broker: opt.broker,
  agentName: opt.name,
  store: opt.home,
  reason: 'plan and book the trip to Paris',
  onPrompt: (p) => {
    say(`ASKED   the owner: open ${p.verificationUriComplete || p.verificationUri} and confirm the code ${p.userCode}`);
    ownerRequest(opt.channel, 'approve', p.userCode);
  },
});
let ok = true;
try {
  say(`GRANTED ${session.scopes.join(' ')}`);
  const tools = { call_api: createProtonPassTool(session, { baseUrl: `${audience}/` }), ask_person: askPerson };
  const model = new ScriptedTravelModel({}).bindTools(Object.values(tools));
  const history = [new SystemMessage('You are a travel agent. Use call_api for the travel API; ask_person before booking.')];
  let r = await runTask(model, tools, history, 'Book me a trip Lisbon to Paris, 12 to 15 December, and pay for it.');
  ok &&= r.startsWith('Booked');
  r = await runTask(model, tools, history, 'Please upgrade the hotel to the Grand Opera and pay the difference (645 EUR).');
  ok &&= r.includes('insufficient_scope');
  say('The owner decides to cut the agent off.');
  await ownerRevokes(opt.channel, opt.name, say);
  for (let i = 0; i < 50; i++) {
    r = await runTask(model, tools, history, 'Check again whether a cheaper flight exists.');
    if (r.startsWith('I could not')) break;
    await sleep(50);
  }
  ok &&= r.startsWith('I could not');
} finally {
  say('CLOSING the session: its access tokens are revoked on exit.');
  try {
    await session.close();
  } catch (e) {
    say(`        (closing: ${e.code}: ${e.message})`);
  }
}
if (!ok) {
  say('the journey did not go as expected');
  process.exit(1);
}
say('DONE    searched, confirmed, booked, paid; refused above the limit; cut off after revocation.');
