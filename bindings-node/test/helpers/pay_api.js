'use strict';
// A small Express payment API for the budget and step-up tests: registered
// with the broker as a resource, it requires payment:execute for the amount
// and spends it from the owner's budget (idempotency key from the query).
const express = require('express');
const { authenticateWithProton, Verifier, VerificationError, sendRejection } = require('protonpass-agent');
const { listen, running } = require('./api.js');

/**
 * An Express app listening on 127.0.0.1, registered with the broker as a
 * resource, and a ready Verifier for it holding the resource's credentials
 * (what spending needs). Resolves to { app, server, url, verifier }.
 */
async function listenAsResource(broker) {
  const app = express();
  const { server, url } = await listen(app);
  const rs = await broker.cliJson('resource', 'add', url);
  const verifier = new Verifier({
    issuer: broker.url,
    audience: url,
    baseUrl: url,
    followFeed: false,
    credentials: { clientId: rs.client_id, clientSecret: rs.client_secret },
  });
  await verifier.ready();
  return { app, server, url, verifier };
}

async function startPayApi(broker) {
  const { app, server, url, verifier } = await listenAsResource(broker);
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
  return running(server, url, verifier);
}

/**
 * A session of `agent`, enrolled with a new grant of payment:execute:under-100
 * on the pay API with `budget`; `options` go to authenticateWithProton.
 * Resolves to { session, gid }.
 */
async function enrollPayer(broker, api, agent, budget, options = {}) {
  const g = await broker.cliJson('grant', 'create', '--agent', agent, '--scope', 'payment:execute:under-100',
    '--audience', api.url, '--budget', budget);
  const session = await authenticateWithProton({
    broker: broker.url,
    audience: api.url,
    store: 'memory',
    agentName: agent,
    scope: ['payment:execute:under-100'],
    enrollmentCode: g.enrollment_code,
    revokeOnExit: false,
    ...options,
  });
  return { session, gid: g.grant_id };
}

module.exports = { listenAsResource, startPayApi, enrollPayer };
