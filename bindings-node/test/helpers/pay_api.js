'use strict';
// A small Express payment API for the budget and step-up tests: registered
// with the broker as a resource, it requires payment:execute for the amount
// and spends it from the owner's budget (idempotency key from the query).
const express = require('express');
const { Verifier, VerificationError, sendRejection } = require('protonpass-agent');

async function startPayApi(broker) {
  const app = express();
  const server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  const rs = await broker.cliJson('resource', 'add', url);
  const verifier = new Verifier({
    issuer: broker.url,
    audience: url,
    baseUrl: url,
    followFeed: false,
    credentials: { clientId: rs.client_id, clientSecret: rs.client_secret },
  });
  await verifier.ready();
  app.post('/pay', verifier.requireScope('payment:execute', { amount: (req) => req.query.amount }), async (req, res) => {
    try {
      const r = await verifier.spend(req.agent, {
        scope: 'payment:execute',
        amount: req.query.amount,
        currency: 'EUR',
        idempotencyKey: req.query.key,
      });
      res.json({ remaining: r.remaining });
    } catch (e) {
      if (e instanceof VerificationError) return sendRejection(res, e);
      res.status(500).end();
    }
  });
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

module.exports = { startPayApi };
