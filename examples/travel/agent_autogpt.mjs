// A travel agent in the AutoGPT style: goals, then a loop in which the "brain"
// answers with thoughts (text, reasoning, plan, criticism) and one command,
// the agent executes the command and feeds the result back as an observation.
// Its HTTP command goes through `session.fetch`: every call carries the
// DPoP-bound access token and a fresh proof signed with the agent's key.
//
// The brain is scripted (deterministic, no model service); it reads the goal
// and the observations as a model would. The journey: search flights and
// hotels, propose an itinerary, ask the person, book, pay; a payment above
// the limit is refused by the API with insufficient_scope; after the owner
// revokes the grant, the next call fails with a clear message; on exit the
// session revokes its tokens.
//
// Run by run.sh; alone: node agent_autogpt.mjs --broker URL --api URL
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ownerRequest, ownerRevokes } from './owner.mjs';

const require = createRequire(import.meta.url);
const pkg = require('./node-package.cjs');
const { authenticateWithProton, ProtonPassError } = require(pkg);
const { apiUrl } = require(`${pkg}/langchain.js`);

const SCOPES = ['travel:search', 'travel:book', 'payment:execute:under-500'];
const say = (text) => console.log(`[autogpt]   ${text}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { values: opt } = parseArgs({
  options: {
    broker: { type: 'string', default: process.env.PROTONPASS_BROKER_URL },
    api: { type: 'string' },
    name: { type: 'string', default: 'travel-autogpt' },
    home: { type: 'string', default: process.env.PROTONPASS_HOME },
    channel: { type: 'string', default: process.env.TRAVEL_DEMO_CHANNEL },
  },
});
if (!opt.api) {
  console.error('usage: node agent_autogpt.mjs --api URL [--broker URL] [--name NAME] [--home DIR]');
  process.exit(2);
}
const api = opt.api.replace(/\/+$/, '');
const audience = `${api}/travel`;

// The commands the brain may choose, AutoGPT style: name, arguments, result text.
function commands(session) {
  return {
    async http_request({ method, path: p, body, reason }) {
      const init = { method, reason };
      if (body !== undefined) {
        init.body = JSON.stringify(body);
        init.headers = { 'content-type': 'application/json' };
      }
      // The path the brain chose stays under the API once normalised
      // (`/../x`, `%2e%2e`, `..%2f`, backslashes are refused).
      const url = apiUrl(api, p);
      if (url === null) return { error: `${p} is outside the API ${api}` };
      try {
        const r = await session.fetch(url, init);
        const text = await r.text();
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = text;
        }
        return { status: r.status, body: json, www: r.headers.get('www-authenticate') };
      } catch (e) {
        if (e instanceof ProtonPassError) return { error: `${e.code}: ${e.message}` };
        throw e;
      }
    },
    async ask_user({ question }) {
      say(`CONFIRM asks the person: ${question}`);
      say('        the person answers: yes (answered automatically in the demo)');
      return { answer: 'yes' };
    },
    async task_complete({ summary }) {
      return { summary };
    },
  };
}

// The scripted brain: thoughts and the next command, from the goal and the observations.
function think(goal, observations) {
  const n = observations.length;
  const last = observations[n - 1]?.result;
  const thoughts = (text, reasoning, plan, criticism = 'none') => ({ text, reasoning, plan, criticism });
  const cmd = (name, args) => ({ name, args });
  if (last && (last.error || last.status >= 400)) {
    const err = last.error || last.body?.detail?.error || last.body?.error;
    const summary =
      err === 'insufficient_scope'
        ? `the API refused the payment (HTTP 403 insufficient_scope): my permission covers payments under 500 only`
        : `I could not continue: ${last.error || `HTTP ${last.status} ${JSON.stringify(last.body)}`}`;
    return { thoughts: thoughts('The last command failed.', 'I must not work around a refusal.', ['report to the person']), command: cmd('task_complete', { summary }) };
  }
  if (goal.kind === 'upgrade') {
    if (n === 0) {
      return {
        thoughts: thoughts('The person wants the upgrade paid.', 'One payment of 645.', ['pay 645']),
        command: cmd('http_request', { method: 'POST', path: '/travel/payments', body: { amount: 645, for: 'upgrade' }, reason: 'pay the hotel upgrade' }),
      };
    }
    return { thoughts: thoughts('Paid.', '', []), command: cmd('task_complete', { summary: `upgrade paid: ${JSON.stringify(last.body)}` }) };
  }
  if (goal.kind === 'check') {
    if (n === 0) {
      return {
        thoughts: thoughts('Look for cheaper flights.', 'A search is enough.', ['search flights']),
        command: cmd('http_request', { method: 'GET', path: '/travel/flights?to=CDG', reason: 'check for cheaper flights' }),
      };
    }
    return { thoughts: thoughts('Nothing cheaper.', '', []), command: cmd('task_complete', { summary: 'flights checked' }) };
  }
  const plan = ['search flights', 'search hotels', 'propose the itinerary and ask the person', 'book', 'pay'];
  if (n === 0) {
    return { thoughts: thoughts('I need flight options first.', 'Cheapest flight to Paris.', plan), command: cmd('http_request', { method: 'GET', path: '/travel/flights?to=CDG', reason: 'find flights to Paris' }) };
  }
  if (n === 1) {
    return { thoughts: thoughts('Now a hotel.', 'Cheapest hotel for 3 nights.', plan.slice(1)), command: cmd('http_request', { method: 'GET', path: '/travel/hotels?city=Paris', reason: 'find a hotel in Paris' }) };
  }
  const flight = observations[0].result.body.flights.reduce((a, b) => (b.price < a.price ? b : a));
  const hotel = observations[1].result.body.hotels.reduce((a, b) => (b.price_per_night < a.price_per_night ? b : a));
  const total = flight.price + hotel.nights * hotel.price_per_night;
  if (n === 2) {
    return {
      thoughts: thoughts(`Itinerary: ${flight.flight} + ${hotel.hotel}, ${total} EUR.`, 'Booking spends money: ask first.', plan.slice(2), 'the person may prefer another hotel'),
      command: cmd('ask_user', { question: `Book ${flight.flight} (${flight.price} EUR) and ${hotel.nights} nights at ${hotel.hotel}, ${total} EUR in total?` }),
    };
  }
  if (n === 3) {
    if (last.answer !== 'yes') return { thoughts: thoughts('Declined.', '', []), command: cmd('task_complete', { summary: 'the person declined' }) };
    return { thoughts: thoughts('Confirmed: book.', '', plan.slice(3)), command: cmd('http_request', { method: 'POST', path: '/travel/bookings', body: { flight: flight.flight, hotel: hotel.hotel, total }, reason: 'book the confirmed itinerary' }) };
  }
  if (n === 4) {
    const booking = last.body.booking;
    return { thoughts: thoughts(`Booked ${booking}; now pay.`, `${total} is under my limit.`, plan.slice(4)), command: cmd('http_request', { method: 'POST', path: '/travel/payments', body: { amount: total, booking }, reason: `pay booking ${booking}` }) };
  }
  return { thoughts: thoughts('Done.', '', []), command: cmd('task_complete', { summary: `booked ${observations[3].result.body.booking} and paid ${last.body.paid} EUR` }) };
}

async function runGoal(cmds, goal) {
  say(`GOAL    ${goal.text}`);
  const observations = [];
  for (let cycle = 1; cycle <= 12; cycle++) {
    const { thoughts, command } = think(goal, observations);
    say(`THINK   ${thoughts.text}${thoughts.plan.length ? ` (plan: ${thoughts.plan.join(' -> ')})` : ''}`);
    if (command.name === 'task_complete') {
      say(`REPORT  ${command.args.summary}`);
      return command.args.summary;
    }
    const a = command.args;
    if (command.name === 'http_request') say(`CALL    ${a.method} ${a.path}${a.body ? ` ${JSON.stringify(a.body)}` : ''}`);
    const result = await cmds[command.name](a);
    if (command.name === 'http_request') {
      const ok = result.status && result.status < 400;
      const shown = result.error ?? JSON.stringify(result.body);
      say(`${ok ? 'GOT    ' : 'REFUSED'} -> ${result.status ?? ''} ${shown.slice(0, 300)}${!ok && result.www ? `\n[autogpt]           WWW-Authenticate: ${result.www}` : ''}`);
    }
    observations.push({ command, result });
  }
  throw new Error('the agent did not complete its goal');
}

say(`ASKING  for ${SCOPES.join(' ')} on ${audience}`);
// readme:begin js-agent
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
// readme:end js-agent
let ok = true;
try {
  say(`GRANTED ${session.scopes.join(' ')}`);
  const cmds = commands(session);
  let r = await runGoal(cmds, { kind: 'trip', text: 'Book a trip Lisbon to Paris, 12 to 15 December, and pay for it.' });
  ok &&= r.startsWith('booked');
  r = await runGoal(cmds, { kind: 'upgrade', text: 'Upgrade the hotel to the Grand Opera and pay the difference (645 EUR).' });
  ok &&= r.includes('insufficient_scope');
  say('The owner decides to cut the agent off.');
  await ownerRevokes(opt.channel, opt.name, say);
  for (let i = 0; i < 50; i++) {
    // The revocation reaches the API through the broker's feed within milliseconds.
    r = await runGoal(cmds, { kind: 'check', text: 'Check again whether a cheaper flight exists.' });
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
