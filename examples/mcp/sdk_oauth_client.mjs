// A third-party MCP client: @modelcontextprotocol/sdk's own OAuth client (no
// protonpass-agent, no DPoP), as desktop assistants and editors use it. It
// finds the broker from the server's 401, registers itself (RFC 7591), sends
// the owner to the consent page, redeems the code (PKCE) and calls a tool with
// the bearer token it got. Used by tests/mcp/test_oauth_client.py:
//
//   node sdk_oauth_client.mjs --server http://127.0.0.1:PORT/mcp --redirect-uri http://127.0.0.1:PORT/callback
//
// It prints {"event": "authorize", "url"} when the owner must approve, reads the
// code from the redirect on standard input, and prints {"event": "result", ...}.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const { values: opt } = parseArgs({ options: { server: { type: 'string' }, 'redirect-uri': { type: 'string' } } });
if (!opt.server || !opt['redirect-uri']) {
  console.error('usage: node sdk_oauth_client.mjs --server URL --redirect-uri URL');
  process.exit(2);
}
const emit = (o) => console.log(JSON.stringify(o));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** The SDK's OAuthClientProvider, in memory. */
class Provider {
  constructor(redirectUri) {
    this.redirectUri = redirectUri;
  }
  get redirectUrl() {
    return this.redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: 'TypeScript assistant (test)',
      redirect_uris: [this.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(c) {
    this.client = c;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(t) {
    this.saved = t;
  }
  redirectToAuthorization(url) {
    emit({ event: 'authorize', url: url.toString() });
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

const provider = new Provider(opt['redirect-uri']);
const server = new URL(opt.server);
let transport = new StreamableHTTPClientTransport(server, { authProvider: provider });
let client = new Client({ name: 'ts-oauth-test', version: '1.0.0' });
try {
  await client.connect(transport);
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  // The owner approved; the browser's redirect carried the code.
  const { value: code } = await lines.next();
  await transport.finishAuth(code.trim());
  transport = new StreamableHTTPClientTransport(server, { authProvider: provider });
  client = new Client({ name: 'ts-oauth-test', version: '1.0.0' });
  await client.connect(transport);
}
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
const r = await client.callTool({ name: 'search_flights', arguments: { to: 'CDG' } });
emit({
  event: 'result',
  tools,
  isError: Boolean(r.isError),
  text: r.content.map((c) => c.text || '').join(''),
  clientId: provider.client && provider.client.client_id,
  tokenType: provider.saved && provider.saved.token_type,
  expiresIn: provider.saved && provider.saved.expires_in,
});
await client.close();
process.exit(0);
