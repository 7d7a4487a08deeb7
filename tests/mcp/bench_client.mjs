// The Node side of the MCP benchmark (driven by bench_node.py): a long-running
// process (warm: its modules loaded, its first-use work done by a warm-up run)
// running @modelcontextprotocol/sdk's Client over StreamableHTTPClientTransport,
// its `fetch` the session's (a DPoP proof per request). One JSON request per
// stdin line, one JSON answer per stdout line:
//   {"op":"cold","resource":R,"store":S,"name":N}
//     authenticateWithProton without a broker (discovery), a new Client and
//     transport, initialize, the first tools/call; answers the marks in seconds
//     from the first request, and each MCP request the transport sent (method,
//     status, time to its response); with "broker":B, the same without
//     discovery (the broker given)
//   {"op":"enroll","resource":R,"store":S,"name":N,"broker":B,"code":C}
//   {"op":"percall","plain":P,"resource":R,"store":S,"name":N,"broker":B,"rounds":K,"calls":M}
//     seconds per tools/call, per round, without auth (P) and with DPoP auth (R)
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(import.meta.url);
const example = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'examples', 'mcp');
const fromExample = createRequire(path.join(example, 'package.json'));
const { authenticateWithProton } = require(require(path.join(example, '..', 'travel', 'node-package.cjs')));
const { Client } = await import(fromExample.resolve('@modelcontextprotocol/sdk/client/index.js'));
const { StreamableHTTPClientTransport } = await import(fromExample.resolve('@modelcontextprotocol/sdk/client/streamableHttp.js'));

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function connect(url, fetchFn) {
  const transport = new StreamableHTTPClientTransport(new URL(url), fetchFn ? { fetch: fetchFn } : {});
  const client = new Client({ name: 'bench', version: '1.0.0' });
  await client.connect(transport); // initialize, then notifications/initialized
  return client;
}

async function echo(client, text) {
  const r = await client.callTool({ name: 'echo', arguments: { text } });
  if (r.isError) throw new Error(`echo failed: ${JSON.stringify(r.content)}`);
}

async function cold({ resource, store, name, broker }) {
  const log = [];
  const t0 = now();
  // No broker given: the core reads the resource's RFC 9728 metadata to find it.
  const session = await authenticateWithProton({ scope: ['bench:call'], audience: resource, broker, store, agentName: name, revokeOnExit: false });
  const marks = [now() - t0];
  const timed = async (url, init) => {
    const t = now();
    const r = await session.fetch(url, init);
    let method = init?.method ?? 'GET';
    try {
      method = `${method} ${JSON.parse(init.body).method ?? ''}`.trim();
    } catch {}
    log.push(`${method} ${r.status} ${((now() - t) * 1000).toFixed(1)} ms`);
    return r;
  };
  let client;
  try {
    client = await connect(resource, timed);
    marks.push(now() - t0);
    await echo(client, 'hi');
    marks.push(now() - t0);
  } finally {
    await client?.close().catch(() => {});
    await session.close();
  }
  return { marks, log };
}

async function enroll({ resource, store, name, broker, code }) {
  const session = await authenticateWithProton({ scope: ['bench:call'], audience: resource, broker, store, agentName: name, enrollmentCode: code, revokeOnExit: false });
  try {
    const client = await connect(resource, (u, i) => session.fetch(u, i));
    await echo(client, 'warm');
    await client.close();
  } finally {
    await session.close();
  }
  return {};
}

async function percall({ plain, resource, store, name, broker, rounds, calls }) {
  const session = await authenticateWithProton({ scope: ['bench:call'], audience: resource, broker, store, agentName: name, revokeOnExit: false });
  try {
    const clients = [await connect(plain), await connect(resource, (u, i) => session.fetch(u, i))];
    for (const c of clients) for (let i = 0; i < 20; i++) await echo(c, 'warm');
    const out = [[], []];
    for (let r = 0; r < rounds; r++) {
      for (const [i, c] of clients.entries()) {
        const t = now();
        for (let k = 0; k < calls; k++) await echo(c, 'x');
        out[i].push((now() - t) / calls);
      }
    }
    for (const c of clients) await c.close();
    return { plain: out[0], protected: out[1] };
  } finally {
    await session.close();
  }
}

const ops = { cold, enroll, percall };
console.log(JSON.stringify({ event: 'ready', node: process.version }));
for await (const line of readline.createInterface({ input: process.stdin })) {
  const req = JSON.parse(line);
  let out;
  try {
    out = await ops[req.op](req);
  } catch (e) {
    out = { error: `${e.name}: ${e.code ?? ''} ${e.message}` };
  }
  console.log(JSON.stringify(out));
}
