// The travel logic of the Node agents, written once: the options, the tasks,
// the scripted decisions (what to call next, what to ask, what to report),
// the HTTP call through `session.fetch`, and the story run.sh expects, with
// its checks. agent_langchain.mjs and agent_autogpt.mjs differ only in how
// they turn a decision into a call: LangChain.js tool calls, or AutoGPT
// commands.
//
// The story: ask for three scopes and get them approved (device flow); search
// flights and hotels, ask the person, book, pay; pay a 645 EUR upgrade, which
// the API refuses (insufficient_scope); be revoked by the owner, after which
// the next call fails. Then step-up, with a second grant (payments under 100
// EUR a call, 600 EUR a day, `--stepup-code`): a 450 EUR flight is refused,
// the session asks the owner for exactly that payment (`session.fetch` with
// `stepUp`), the owner approves it, and the call goes through once with the
// one-time token (150 EUR left); the same payment sent again with the same
// one-time token (a fresh proof) is refused with 401 invalid_token, since the
// API's verifier redeemed it at the broker on first use; the agent's own try
// without asking is refused too (insufficient_scope); two small payments
// spend the day's budget and the next is refused with budget_exceeded.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ownerRequest, ownerRevokes } from './owner.mjs';

const require = createRequire(import.meta.url);
export const pkgDir = require('./node-package.cjs');
const { authenticateWithProton, ProtonPassError } = require(pkgDir);

export const SCOPES = ['travel:search', 'travel:book', 'payment:execute:under-500'];
export const STEPUP_SCOPES = ['payment:execute:under-100'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The command line both agents take. */
export function options(script, name) {
  const { values: opt } = parseArgs({
    options: {
      broker: { type: 'string', default: process.env.PROTONPASS_BROKER_URL },
      api: { type: 'string' },
      name: { type: 'string', default: name },
      home: { type: 'string', default: process.env.PROTONPASS_HOME },
      channel: { type: 'string', default: process.env.TRAVEL_DEMO_CHANNEL },
      'stepup-code': { type: 'string' },
    },
  });
  if (!opt.api) {
    console.error(`usage: node ${script} --api URL [--broker URL] [--name NAME] [--home DIR] [--stepup-code CODE]`);
    process.exit(2);
  }
  opt.api = opt.api.replace(/\/+$/, '');
  opt.audience = `${opt.api}/travel`;
  return opt;
}

// The tasks, by their text (a chat model only sees the text).
const TASKS = new Map();
const task = (kind, text, extra = {}) => {
  const t = { kind, text, ...extra };
  TASKS.set(text.toLowerCase(), t);
  return t;
};
export const taskOf = (text) => TASKS.get(String(text).toLowerCase());
const FLIGHT = { payee: 'Air Example', currency: 'EUR', bindingMessage: 'Flight LIS-CDG, 12 December' };
const T = {
  trip: task('trip', 'Book me a trip Lisbon to Paris, 12 to 15 December, and pay for it.'),
  upgrade: task('upgrade', 'Please upgrade the hotel to the Grand Opera and pay the difference (645 EUR).'),
  check: task('check', 'Check again whether a cheaper flight exists.'),
};
// The step-up part's payments. Idempotency keys are the API's, across all its
// agents: each agent's are prefixed with its name.
const payments = (agent) => ({
  flight: task('charge', 'Pay the 450 EUR flight; ask the owner to approve it if your limit is too low.', { amount: '450', key: `${agent}-flight-1`, stepUp: true }),
  again: task('charge', 'Pay the 450 EUR flight once more, without asking the owner.', { amount: '450', key: `${agent}-flight-2` }),
  taxi0: task('charge', 'Pay the 80 EUR taxi.', { amount: '80', key: `${agent}-taxi-0` }),
  taxi1: task('charge', 'Pay the 70 EUR taxi.', { amount: '70', key: `${agent}-taxi-1` }),
  taxi3: task('charge', 'Pay the 20 EUR taxi.', { amount: '20', key: `${agent}-taxi-3` }),
});

/** The error code of a refused call: the API's body, else its `WWW-Authenticate`. */
export function refusal(r) {
  if (r.error) return r.error;
  const code = r.body?.detail?.error ?? r.body?.error;
  return code ?? /error="([^"]+)"/.exec(r.www ?? '')?.[1] ?? `HTTP ${r.status}`;
}

/**
 * The scripted decision: from the task and the results so far (`{status,
 * body}`, `{error}` or `{answer}`), the thoughts and one of `call` (method,
 * path under the API, body, reason, stepUp), `ask` (a question for the
 * person) or `report` (the final answer).
 */
export function decide(t, done) {
  const n = done.length;
  const last = done[n - 1];
  const th = (text, reasoning = '', plan = [], criticism = 'none') => ({ text, reasoning, plan, criticism });
  if (last && (last.error || last.status >= 400)) {
    const code = refusal(last);
    const report =
      t.kind === 'upgrade' && code === 'insufficient_scope'
        ? 'The API refused the payment (HTTP 403 insufficient_scope): my permission covers payments under 500 only.'
        : t.kind === 'charge'
          ? `The API refused the payment of ${t.amount} EUR (HTTP ${last.status} ${code}).`
          : `I could not continue: ${last.error ?? `HTTP ${last.status} ${JSON.stringify(last.body)}`}`;
    return { thoughts: th('The last call failed.', 'I must not work around a refusal.', ['report to the person']), report };
  }
  if (t.kind === 'charge') {
    if (!n) {
      const stepUp = t.stepUp ? { ...FLIGHT, amount: t.amount } : undefined;
      const how = stepUp ? 'it is above my limit, so the owner is asked to approve this one payment' : 'within my limit';
      return {
        thoughts: th(`Pay ${t.amount} EUR (${t.key}).`, how, ['pay']),
        call: { method: 'POST', path: `charges?amount=${t.amount}&key=${t.key}`, reason: `pay ${t.key}`, stepUp },
      };
    }
    return { thoughts: th('Paid.'), report: `Paid ${t.amount} EUR, ${last.body.remaining} EUR left today.` };
  }
  if (t.kind === 'upgrade') {
    if (!n) {
      return { thoughts: th('The person wants the upgrade paid.', 'One payment of 645.', ['pay 645']), call: { method: 'POST', path: 'payments', body: { amount: 645, for: 'upgrade' }, reason: 'pay the hotel upgrade' } };
    }
    return { thoughts: th('Paid.'), report: `Upgrade paid: ${JSON.stringify(last.body)}` };
  }
  if (t.kind === 'check') {
    if (!n) return { thoughts: th('Look for cheaper flights.', 'A search is enough.', ['search flights']), call: { method: 'GET', path: 'flights?to=CDG', reason: 'check for cheaper flights' } };
    return { thoughts: th('Nothing cheaper.'), report: 'Flights checked; nothing cheaper.' };
  }
  const plan = ['search flights', 'search hotels', 'propose the itinerary and ask the person', 'book', 'pay'];
  if (n === 0) return { thoughts: th('I need flight options first.', 'Cheapest flight to Paris.', plan), call: { method: 'GET', path: 'flights?to=CDG', reason: 'find flights to Paris' } };
  if (n === 1) return { thoughts: th('Now a hotel.', 'Cheapest hotel for 3 nights.', plan.slice(1)), call: { method: 'GET', path: 'hotels?city=Paris', reason: 'find a hotel in Paris' } };
  const flight = done[0].body.flights.reduce((a, b) => (b.price < a.price ? b : a));
  const hotel = done[1].body.hotels.reduce((a, b) => (b.price_per_night < a.price_per_night ? b : a));
  const total = flight.price + hotel.nights * hotel.price_per_night;
  if (n === 2) {
    return {
      thoughts: th(`Itinerary: ${flight.flight} + ${hotel.hotel}, ${total} EUR.`, 'Booking spends money: ask first.', plan.slice(2), 'the person may prefer another hotel'),
      ask: `Book ${flight.flight} (${flight.price} EUR) and ${hotel.nights} nights at ${hotel.hotel}, ${total} EUR in total?`,
    };
  }
  if (n === 3) {
    if (last.answer !== 'yes') return { thoughts: th('Declined.'), report: 'The person declined; nothing booked.' };
    return { thoughts: th('Confirmed: book.', '', plan.slice(3)), call: { method: 'POST', path: 'bookings', body: { flight: flight.flight, hotel: hotel.hotel, total }, reason: 'book the confirmed itinerary' } };
  }
  if (n === 4) {
    const booking = last.body.booking;
    return { thoughts: th(`Booked ${booking}; now pay.`, `${total} is under my limit.`, plan.slice(4)), call: { method: 'POST', path: 'payments', body: { amount: total, booking }, reason: `pay booking ${booking}` } };
  }
  return { thoughts: th('Done.'), report: `Booked ${done[3].body.booking} and paid ${last.body.paid} EUR.` };
}

/** One call through `session.fetch` (signed; with `stepUp`, the owner is asked on a 403): `{status, body, www}` or `{error}`. */
export async function request(session, url, { method, body, reason, stepUp }) {
  const init = { method, reason };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers = { 'content-type': 'application/json' };
  }
  if (stepUp) init.stepUp = stepUp;
  try {
    const r = await session.fetch(url, init);
    const text = await r.text();
    let json = text;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: r.status, body: json, www: r.headers.get('www-authenticate') };
  } catch (e) {
    if (e instanceof ProtonPassError) return { error: `${e.code}: ${e.message}` };
    throw e;
  }
}

async function closing(session, say) {
  say('CLOSING the session: its access tokens are revoked on exit.');
  try {
    await session.close();
  } catch (e) {
    say(`        (closing: ${e.code}: ${e.message})`);
  }
}

/**
 * The whole story. `agentFor(session)` gives the agent's way of doing a task:
 * `(task) => Promise<{report, results}>`. Resolves to whether every step
 * went as told.
 */
export async function runStory(opt, agentFor, say) {
  say(`ASKING  for ${SCOPES.join(' ')} on ${opt.audience}`);
  // readme:begin js-agent
  const session = await authenticateWithProton({
    scope: SCOPES,
    audience: opt.audience,
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
    const run = agentFor(session);
    let r = await run(T.trip);
    ok &&= r.report.startsWith('Booked');
    r = await run(T.upgrade);
    ok &&= r.report.includes('insufficient_scope');
    say('The owner decides to cut the agent off.');
    await ownerRevokes(opt.channel, opt.name, say);
    for (let i = 0; i < 50; i++) {
      // The revocation reaches the API through the broker's feed within milliseconds.
      r = await run(T.check);
      if (r.report.startsWith('I could not')) break;
      await sleep(50);
    }
    ok &&= r.report.startsWith('I could not');
  } finally {
    await closing(session, say);
  }
  if (!ok) say('the journey did not go as expected');
  if (opt['stepup-code']) ok = (await stepUpStory(opt, agentFor, say)) && ok;
  return ok;
}

/** Step-up: the second grant, one payment approved by the owner, then the day's budget. */
async function stepUpStory(opt, agentFor, say) {
  const name = `${opt.name}-pay`;
  say(`STEP-UP ${name}: payments under 100 EUR a call, 600 EUR a day (the owner's grant, enrollment code)`);
  const session = await authenticateWithProton({
    scope: STEPUP_SCOPES,
    audience: opt.audience,
    broker: opt.broker,
    agentName: name,
    store: opt.home,
    enrollmentCode: opt['stepup-code'],
    allowStepUp: true,
    onPrompt: (p) => {
      say(`ASKED   the owner to approve this one payment at ${p.verificationUri}`);
      ownerRequest(opt.channel, 'stepup', name);
    },
  });
  // Keep the one-time token the session is given when the owner approves,
  // to show that its first use spent it.
  let approved;
  const stepUp = session.stepUp;
  session.stepUp = async function (...args) {
    approved = await stepUp.apply(this, args);
    return approved;
  };
  const P = payments(name);
  const checks = [];
  const expect = (what, cond) => {
    checks.push(cond);
    if (!cond) say(`UNEXPECTED ${what}`);
  };
  try {
    const run = agentFor(session);
    const t0 = Date.now();
    let r = await run(P.flight);
    let last = r.results.at(-1);
    expect('the approved flight is paid once, 150 EUR left', last.status === 200 && last.body.remaining === '150.00');
    say(`        (the owner approved it; paid once, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    // The same payment with the same one-time token, a fresh DPoP proof.
    const url = `${opt.audience}/charges?amount=${P.flight.amount}&key=${P.flight.key}`;
    const replay = approved
      ? await fetch(url, { method: 'POST', headers: session.oneTimeHeaders(approved, 'POST', url) })
      : { status: 0, headers: new Headers() };
    const code = /error="([^"]+)"/.exec(replay.headers.get('www-authenticate') ?? '')?.[1];
    say(`REPLAY  the same payment with the same one-time token: HTTP ${replay.status} ${code}`);
    expect('the same payment with the same one-time token is refused (invalid_token: it is spent)', replay.status === 401 && code === 'invalid_token');
    r = await run(P.again);
    last = r.results.at(-1);
    expect('the same payment again without asking is refused (insufficient_scope)', last.status === 403 && refusal(last) === 'insufficient_scope');
    for (const t of [P.taxi0, P.taxi1]) {
      r = await run(t);
      expect(`${t.key} is paid`, r.results.at(-1).status === 200);
    }
    r = await run(P.taxi3);
    last = r.results.at(-1);
    expect('the day budget is spent (budget_exceeded)', last.status === 403 && refusal(last) === 'budget_exceeded');
  } finally {
    await closing(session, say);
  }
  const ok = checks.length === 6 && checks.every(Boolean);
  say(ok ? 'step-up story complete' : 'step-up story FAILED');
  return ok;
}
