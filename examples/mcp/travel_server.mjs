// The travel MCP server in Node: @modelcontextprotocol/sdk's Streamable HTTP
// server behind Express, protected by protonpass-agent/mcp. The same tools and
// scopes as travel_server.py:
//   search_flights  travel:search
//   book_flight     travel:book
//   pay             payment:execute with a limit covering the amount
// Run: node travel_server.mjs --broker URL [--addr 127.0.0.1:0]; the first
// stdout line is {"event":"listening","url":...,"resource":...}.
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import express from 'express';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

const require = createRequire(import.meta.url);
const pkgDir = require('../travel/node-package.cjs');
const { protect, requireScope, agentOf } = require(path.join(pkgDir, 'mcp.js'));

export const SCOPES = ['travel:search', 'travel:book', 'payment:execute:under-500'];
const FLIGHTS = [
  { flight: 'TP 1234', from: 'LIS', to: 'CDG', date: '2026-12-12', price: 180 },
  { flight: 'AF 1025', from: 'LIS', to: 'CDG', date: '2026-12-12', price: 240 },
];
let bookings = 0;

const json = (value) => ({ content: [{ type: 'text', text: JSON.stringify(value) }] });
const who = (extra) => {
  const a = agentOf(extra);
  return { owner: a.owner, agent: a.agent, grant: a.grantId, reason: a.reason ?? null };
};

/** A fresh MCP server with the travel tools (stateless: one per HTTP request). */
export function makeServer() {
  const server = new McpServer({ name: 'travel', version: '1.0.0' });
  server.registerTool(
    'search_flights',
    { description: 'Search flights to a destination airport (IATA code).', inputSchema: { to: z.string().default('CDG') } },
    requireScope('travel:search', async ({ to }, extra) =>
      json({ flights: FLIGHTS.filter((f) => f.to === to.toUpperCase()), by: who(extra) })),
  );
  // readme:begin mcp-tool-node
  server.registerTool(
    'book_flight',
    { description: 'Book (hold) a flight by its number.', inputSchema: { flight: z.string() } },
    requireScope('travel:book', async ({ flight }, extra) => {
      if (!FLIGHTS.some((f) => f.flight === flight)) return { content: [{ type: 'text', text: `no flight ${flight}` }], isError: true };
      bookings += 1;
      return json({ booking: `BK-${String(bookings).padStart(4, '0')}`, flight, status: 'held', by: who(extra) });
    }),
  );
  // readme:end mcp-tool-node
  server.registerTool(
    'pay',
    { description: 'Pay for a booking (amount in EUR).', inputSchema: { booking: z.string(), amount: z.number() } },
    requireScope(
      'payment:execute',
      async ({ booking, amount }, extra) => json({ booking, paid: amount.toFixed(2), status: 'captured', by: who(extra) }),
      { amount: 'amount' },
    ),
  );
  return server;
}

/**
 * The Express app serving MCP at /mcp for `resource`, protected by the broker
 * at `broker`; `options` go to `protect` (e.g. `{ acceptBearer: true }`).
 */
export function makeApp(broker, resource, options = {}) {
  // readme:begin mcp-protect-node
  const app = express();
  // Verified before the body is parsed: an unauthenticated request costs no parsing.
  const guard = protect({ issuer: broker, resource, scopesSupported: SCOPES, ...options });
  app.use(guard);
  app.use(express.json());
  // readme:end mcp-protect-node
  serveMcp(app, makeServer);
  return { app, verifier: guard.verifier };
}

/**
 * Serve MCP at /mcp of the Express `app`, statelessly: each HTTP request gets
 * a fresh server from `newServer()` on a transport of its own, both closed
 * with the response.
 */
export function serveMcp(app, newServer) {
  app.all('/mcp', async (req, res) => {
    const server = newServer();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values: opt } = parseArgs({
    options: { broker: { type: 'string' }, addr: { type: 'string', default: '127.0.0.1:0' }, 'accept-bearer': { type: 'boolean', default: false } },
  });
  if (!opt.broker) {
    console.error('usage: node travel_server.mjs --broker URL [--addr HOST:PORT] [--accept-bearer]');
    process.exit(2);
  }
  const i = opt.addr.lastIndexOf(':');
  const host = opt.addr.slice(0, i);
  const port = Number(opt.addr.slice(i + 1));
  // The port is known once listening; the resource (the tokens' audience) needs it.
  const holder = { app: null };
  const http = await import('node:http');
  const srv = http.createServer((req, res) => holder.app(req, res));
  srv.listen(port, host, () => {
    const url = `http://${host}:${srv.address().port}`;
    const resource = `${url}/mcp`;
    // --accept-bearer: also bearer tokens, for MCP clients without DPoP whose
    // tokens the resource's owner allows (protonpass-broker resource bearer URL on).
    const { app, verifier } = makeApp(opt.broker, resource, { acceptBearer: opt['accept-bearer'] });
    holder.app = app;
    const stop = () => {
      verifier.stop();
      srv.close();
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    console.log(JSON.stringify({ event: 'listening', url, resource }));
  });
}
