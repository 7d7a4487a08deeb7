'use strict';
// A small travel API protected by the package's Verifier and middleware.
const express = require('express');
const { Verifier } = require('protonpass-agent');

/**
 * Listen on 127.0.0.1 port 0. `audience` defaults to the server's own origin.
 * Resolves to { url, verifier, close() }.
 */
async function startApi(issuer, options = {}) {
  const app = express();
  app.use(express.json());
  const { server, url } = await listen(app);
  const verifier = new Verifier({ issuer, audience: options.audience || url, baseUrl: url, ...(options.verifier || {}) });
  await verifier.ready();
  app.get('/whoami', verifier.middleware(), (req, res) => res.json(req.agent));
  app.get('/trips', verifier.requireScope('travel:search'), (req, res) =>
    res.json({ trips: ['GVA-LIS'], owner: req.agent.owner, reason: req.agent.reason ?? null }),
  );
  app.post('/bookings', verifier.requireScope('travel:book'), (req, res) =>
    res.status(201).json({ booked: req.body.trip, by: req.agent.agent }),
  );
  app.post('/pay', verifier.requireScope('payment:execute', { amount: (req) => req.body?.amount }), (req, res) =>
    res.json({ paid: req.body.amount }),
  );
  app.get('/moved', (req, res) => res.redirect(302, '/whoami'));
  return running(server, url, verifier);
}

/** Listen on 127.0.0.1 port 0: the server and its origin. */
async function listen(app) {
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

/** What a started API resolves to: { url, verifier, close() }. */
function running(server, url, verifier) {
  return {
    url,
    verifier,
    close: async () => {
      verifier.stop();
      server.closeAllConnections?.();
      await new Promise((r) => server.close(r));
    },
  };
}

module.exports = { startApi, listen, running };
