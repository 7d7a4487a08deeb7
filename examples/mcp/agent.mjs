// A travel agent reaching the travel MCP server through @modelcontextprotocol/sdk's
// client, in Node: the session's `fetch` (a DPoP proof per request, nonce
// challenges answered, tokens renewed) is the transport's `fetch`. It lists the
// tools, searches, books, pays within its limit and is refused
// (`insufficient_scope`) a payment beyond it. With --langchain the tools come
// from @langchain/mcp-adapters' `loadMcpTools` in one call and are invoked as
// LangChain tools. With --until-revoked it keeps calling until the owner revokes
// its grant, and reports how the session was cut off.
//
// Each step is one JSON line on stdout. Authentication: the stored grant, an
// enrollment code in PROTONPASS_ENROLLMENT_CODE, or the device flow; without
// --broker (and PROTONPASS_BROKER_URL) the broker is found from the server's
// RFC 9728 metadata.
//   node agent.mjs --server http://127.0.0.1:PORT/mcp [--broker URL] [--langchain] [--until-revoked]
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const require = createRequire(import.meta.url);
const { authenticateWithProton } = require(require('../travel/node-package.cjs'));

const SCOPES = ['travel:search', 'travel:book', 'payment:execute:under-500'];
const say = (event, fields = {}) => console.log(JSON.stringify({ event, ...fields }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const { values: opt } = parseArgs({
  options: {
    broker: { type: 'string', default: process.env.PROTONPASS_BROKER_URL },
    server: { type: 'string' },
    store: { type: 'string' }, // 'memory' or a directory; default: the file store in PROTONPASS_HOME
    langchain: { type: 'boolean', default: false },
    'until-revoked': { type: 'boolean', default: false },
  },
});
if (!opt.server) {
  console.error('usage: node agent.mjs --server URL [--broker URL] [--langchain] [--until-revoked]');
  process.exit(2);
}

const textOf = (content) => (Array.isArray(content) ? content.map((c) => c.text ?? '').join('') : String(content));

async function main() {
  const session = await authenticateWithProton({ scope: SCOPES, audience: opt.server, broker: opt.broker, ...(opt.store ? { store: opt.store } : {}) });
  say('authenticated', { scopes: session.scopes });
  // readme:begin mcp-client-node
  const transport = new StreamableHTTPClientTransport(new URL(opt.server), {
    fetch: (url, init) => session.fetch(url, init),
  });
  const client = new Client({ name: 'travel-agent', version: '1.0.0' });
  // readme:end mcp-client-node
  let call;
  try {
    await client.connect(transport);
    if (opt.langchain) {
      const { loadMcpTools } = await import('@langchain/mcp-adapters');
      const tools = Object.fromEntries((await loadMcpTools('travel', client)).map((t) => [t.name, t]));
      say('tools', { names: Object.keys(tools), via: 'langchain' });
      // Invoked as a model's tool call. The adapters raise a ToolException for a
      // refused call, which a LangChain agent's ToolNode hands the model as an
      // error message: the same here.
      call = async (name, args) => {
        try {
          const msg = await tools[name].invoke({ type: 'tool_call', id: '1', name, args });
          return { error: msg.status === 'error', text: textOf(msg.content) };
        } catch (e) {
          if (e && e.name === 'ToolException') return { error: true, text: e.message };
          throw e;
        }
      };
    } else {
      const { tools } = await client.listTools();
      say('tools', { names: tools.map((t) => t.name), via: 'mcp' });
      call = async (name, args) => {
        const r = await client.callTool({ name, arguments: args });
        return { error: Boolean(r.isError), text: textOf(r.content) };
      };
    }
    const found = JSON.parse((await call('search_flights', { to: 'CDG' })).text);
    const cheapest = found.flights.reduce((a, b) => (b.price < a.price ? b : a));
    say('searched', { flights: found.flights.map((f) => f.flight), by: found.by });
    const booked = await call('book_flight', { flight: cheapest.flight });
    const booking = JSON.parse(booked.text).booking;
    say('booked', { booking, flight: cheapest.flight, error: booked.error });
    for (const amount of [900, cheapest.price]) {
      const r = await call('pay', { booking, amount });
      say(r.error ? 'pay_refused' : 'paid', { amount, error: r.error, text: r.text });
    }
    if (opt['until-revoked']) {
      say('waiting_for_revocation');
      const deadline = Date.now() + 20000;
      for (;;) {
        if (Date.now() > deadline) {
          say('still_connected');
          break;
        }
        let r;
        try {
          r = await call('search_flights', { to: 'CDG' });
        } catch (e) {
          say('cut_off', { errors: [`${e.name}: ${e.code ?? ''} ${e.message}`.slice(0, 300)] });
          break;
        }
        if (r.error) {
          say('cut_off', { errors: [r.text.slice(0, 300)] });
          break;
        }
        await sleep(200);
      }
    }
  } finally {
    await client.close().catch(() => {});
    await session.close().catch(() => {});
  }
}

await main();
