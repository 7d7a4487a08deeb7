'use strict';
// A plain HTTP server that records every request it gets (method, path,
// whether it carried credentials) and answers 200, or a redirect for paths
// under /redirect-to/. It verifies nothing: it stands for any server, to show
// what a client sent and where.
const http = require('node:http');

/** Listen on 127.0.0.1 port 0. Resolves to { url, seen, close() }. */
async function startRecorder() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method, path: req.url, authorization: req.headers.authorization, dpop: req.headers.dpop });
    const to = req.url.startsWith('/api/redirect-to/') ? req.url.slice('/api/redirect-to'.length) : null;
    if (to) {
      res.writeHead(302, { location: to });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close: async () => {
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}

module.exports = { startRecorder };
