// node-oidc-provider (in-memory adapter) with DPoP, for the side-by-side
// refresh benchmark. Prints {"url": ...} as its first stdout line, then serves:
//   POST /seed {"jkts": [...]}  -> {"refresh_tokens": [...]}, one DPoP-bound
//                                  refresh token (with its grant) per thumbprint
//   everything else             -> the provider (token endpoint: /token)
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}`;

// An unbounded in-memory adapter: the quick-start one is an LRU cache that
// evicts the seeded grants once rotation has created enough tokens.
const store = new Map();
const grants = new Map();
class MemoryAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload) {
    const key = this.key(id);
    store.set(key, payload);
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, []);
      grants.get(payload.grantId).push(key);
    }
  }
  async find(id) { return store.get(this.key(id)); }
  async findByUid(uid) {
    for (const [k, v] of store) if (k.startsWith(`${this.name}:`) && v.uid === uid) return v;
    return undefined;
  }
  async findByUserCode(code) {
    for (const [k, v] of store) if (k.startsWith(`${this.name}:`) && v.userCode === code) return v;
    return undefined;
  }
  async consume(id) {
    const p = store.get(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const k of grants.get(grantId) ?? []) store.delete(k);
    grants.delete(grantId);
  }
}

const provider = new Provider(url, {
  adapter: MemoryAdapter,
  clients: [{
    client_id: 'bench',
    token_endpoint_auth_method: 'none',
    grant_types: ['refresh_token', 'authorization_code'],
    response_types: ['code'],
    redirect_uris: ['http://localhost/cb'],
  }],
  features: {
    // Nonces required, as the broker does by default.
    dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true },
    devInteractions: { enabled: false },
  },
  rotateRefreshToken: true,
  scopes: ['openid', 'offline_access'],
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  ttl: { AccessToken: 3600, RefreshToken: 30 * 24 * 3600, Grant: 30 * 24 * 3600 },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
if (process.env.BENCH_DEBUG) provider.on('grant.error', (ctx, err) => console.error('grant.error', err.error, err.error_description, err.error_detail, err.message));

const callback = provider.callback();
const client = await provider.Client.find('bench');

async function seed(jkts) {
  const out = [];
  for (const jkt of jkts) {
    const grant = new provider.Grant({ accountId: 'owner', clientId: 'bench' });
    grant.addOIDCScope('openid offline_access');
    const grantId = await grant.save();
    const rt = new provider.RefreshToken({
      accountId: 'owner', client, grantId, scope: 'openid offline_access',
      gty: 'authorization_code', jkt, iiat: Math.floor(Date.now() / 1000),
    });
    out.push(await rt.save());
  }
  return out;
}

server.on('request', (req, res) => {
  if (req.method === 'POST' && req.url === '/seed') {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      try {
        const tokens = await seed(JSON.parse(body).jkts);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ refresh_tokens: tokens }));
      } catch (e) {
        res.statusCode = 500;
        res.end(String(e));
      }
    });
    return;
  }
  callback(req, res);
});

console.log(JSON.stringify({ url, token_endpoint: `${url}/token` }));
