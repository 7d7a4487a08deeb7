// The benchmark's Node MCP server: one `echo` tool on @modelcontextprotocol/sdk's
// Streamable HTTP server behind Express, served plain or protected by
// protonpass-agent/mcp (same SDK, same transport, same tool body), as
// travel_server.mjs serves its tools. The Node twin of bench_server.py.
//
// Run: node bench_server.mjs [--broker URL] (with --broker: protected); the
// first stdout line is {"event":"listening","resource":...}.
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
// The SDKs come from examples/mcp (its package-lock.json), the package from bindings-node.
const example = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'mcp');
const fromExample = createRequire(path.join(example, 'package.json'));
const pkgDir = require(path.join(example, '..', 'travel', 'node-package.cjs'));
const { protect, requireScope, agentOf } = require(path.join(pkgDir, 'mcp.js'));
const express = (await import(fromExample.resolve('express'))).default;
const { McpServer } = await import(fromExample.resolve('@modelcontextprotocol/sdk/server/mcp.js'));
// The example's stateless serving of /mcp (one server and transport per request).
const { serveMcp } = await import(path.join(example, 'travel_server.mjs'));
const { z } = await import(fromExample.resolve('zod'));

const SCOPE = 'bench:call';
const { values: opt } = parseArgs({ options: { broker: { type: 'string' } } });

function makeServer() {
  const server = new McpServer({ name: 'bench', version: '1.0.0' });
  const body = async ({ text }, extra) => ({
    content: [{ type: 'text', text: `${opt.broker ? agentOf(extra).agent : 'anonymous'}: ${text}` }],
  });
  server.registerTool('echo', { inputSchema: { text: z.string() } }, opt.broker ? requireScope(SCOPE, body) : body);
  return server;
}

const holder = { app: null };
const srv = http.createServer((req, res) => holder.app(req, res));
srv.listen(0, '127.0.0.1', () => {
  const resource = `http://127.0.0.1:${srv.address().port}/mcp`;
  const app = express();
  let guard = null;
  if (opt.broker) {
    guard = protect({ issuer: opt.broker, resource, scopesSupported: [SCOPE] });
    app.use(guard);
  }
  app.use(express.json());
  serveMcp(app, makeServer);
  holder.app = app;
  const stop = () => {
    if (guard) guard.verifier.stop();
    srv.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log(JSON.stringify({ event: 'listening', resource }));
});
