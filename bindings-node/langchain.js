'use strict';
// A LangChain.js tool that calls one API with a session's credentials. The
// model chooses the method, path and body; the token and proofs stay in this
// process and never appear in what the model sees.
const { ProtonPassError } = require('./index.js');

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const ESCAPED = /%(2e|2f|5c)/gi;
const DECODED = { '2e': '.', '2f': '/', '5c': '\\' };

/** RFC 3986 section 5.2.4 on an absolute path. */
function removeDotSegments(path) {
  const segments = path.split('/').slice(1);
  const out = [];
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '..') {
      out.pop();
      if (last) out.push('');
    } else if (seg === '.') {
      if (last) out.push('');
    } else {
      out.push(seg);
    }
  });
  return `/${out.join('/')}`;
}

/**
 * The URL of `path` (relative to `baseUrl`, with any query string) under
 * `baseUrl`, or null when it would leave the base path. Dot segments, their
 * percent-encoded forms (`%2e`), encoded slashes and backslashes (`%2f`,
 * `%5c`) and backslashes are normalised before the check, whatever the
 * server decodes before routing, and the URL carries the normalised path, so
 * the server sees what was checked. Absolute URLs are refused.
 */
function apiUrl(baseUrl, path) {
  const base = new URL(baseUrl);
  const p = String(path ?? '');
  // An absolute URL (a scheme), control characters or whitespace: refused.
  if (/^[a-z][a-z0-9+.-]*:/i.test(p) || /[\u0000-\u0020\u007f]/.test(p)) return null;
  const noFragment = p.split('#')[0];
  const q = noFragment.indexOf('?');
  const rawPath = q >= 0 ? noFragment.slice(0, q) : noFragment;
  const query = q >= 0 ? noFragment.slice(q) : '';
  const decoded = rawPath.replace(ESCAPED, (_, hex) => DECODED[hex.toLowerCase()]).replace(/\\/g, '/');
  const prefix = removeDotSegments(base.pathname).replace(/\/+$/, '');
  const full = removeDotSegments(`${prefix}/${decoded.replace(/^\/+/, '')}`);
  if (full !== prefix && !full.startsWith(`${prefix}/`)) return null;
  return `${base.origin}${full}${query}`;
}

/**
 * Create the tool. `options.baseUrl` is the API (usually the session's
 * audience); only URLs under it are ever called.
 */
function createProtonPassTool(session, options = {}) {
  const { tool } = require('@langchain/core/tools');
  if (!session || typeof session.fetch !== 'function') {
    throw new ProtonPassError('invalid_request', 'createProtonPassTool needs a Session from authenticateWithProton');
  }
  const baseUrl = new URL(options.baseUrl || session.audiences[0]);
  const base = baseUrl.href.endsWith('/') ? baseUrl.href : `${baseUrl.href}/`;
  const methods = (options.methods || METHODS).map((m) => m.toUpperCase());
  const maxChars = options.maxResponseChars ?? 4000;
  const name = options.name || 'call_api';
  const description =
    options.description ||
    `Call the API at ${base} on the user's behalf, with the permissions the user granted (${session.scopes.join(', ') || 'none'}). ` +
      'Give the HTTP method, the path relative to the API, and a JSON body for writes. Returns the status and the response body.';

  return tool(
    async ({ method = 'GET', path, body, reason }) => {
      const m = String(method).toUpperCase();
      if (!methods.includes(m)) return `error: method ${m} is not allowed (use one of ${methods.join(', ')})`;
      // Stay under the API: no absolute URLs, no climbing out of the base
      // path (`../`, `%2e%2e/`, `..%2f`, `..\\`).
      const url = apiUrl(baseUrl, path);
      if (url === null) return `error: ${path} is outside the API ${base}`;
      const init = { method: m, reason: reason || options.reason };
      if (body !== undefined && body !== null && m !== 'GET') {
        init.body = typeof body === 'string' ? body : JSON.stringify(body);
        init.headers = { 'content-type': 'application/json' };
      }
      try {
        const r = await session.fetch(url, init);
        let text = await r.text();
        if (text.length > maxChars) text = `${text.slice(0, maxChars)}... (truncated)`;
        return `HTTP ${r.status}\n${text}`;
      } catch (e) {
        if (e instanceof ProtonPassError) return `error ${e.code}: ${e.message}`;
        throw e;
      }
    },
    {
      name,
      description,
      schema: {
        type: 'object',
        properties: {
          method: { type: 'string', enum: methods, description: 'HTTP method' },
          path: { type: 'string', description: `Path relative to ${base}, e.g. "trips?from=GVA"` },
          body: { description: 'JSON body for POST, PUT and PATCH' },
          reason: { type: 'string', description: 'Why this call is needed (recorded in the audit log)' },
        },
        required: ['path'],
      },
    },
  );
}

module.exports = { createProtonPassTool, apiUrl };
