'use strict';
// The LangChain.js tool inside a real agent loop driven by @langchain/core's
// fake chat model: the API is called with the session's credentials, and
// nothing the model sees contains the token or a proof.
const test = require('node:test');
const assert = require('node:assert/strict');
const { fakeModel } = require('@langchain/core/testing');
const { AIMessage, HumanMessage } = require('@langchain/core/messages');
const { authenticateWithProton } = require('protonpass-agent');
const { createProtonPassTool } = require('protonpass-agent/langchain');
const { startBroker } = require('./helpers/broker.js');
const { startApi } = require('./helpers/api.js');
const { startRecorder } = require('./helpers/recorder.js');

/** The usual tool-calling loop: ask the model, run the tools it calls, repeat. */
async function runAgent(model, tools, question) {
  const bound = model.bindTools(tools);
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
  const messages = [new HumanMessage(question)];
  for (let turn = 0; turn < 5; turn++) {
    const ai = await bound.invoke(messages);
    messages.push(ai);
    if (!ai.tool_calls || ai.tool_calls.length === 0) return messages;
    for (const call of ai.tool_calls) messages.push(await byName[call.name].invoke(call));
  }
  throw new Error('the agent did not finish');
}

test('a LangChain.js agent calls the API through the tool', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startApi(broker.url);
  t.after(() => api.close());
  const g = await broker.cliJson('grant', 'create', '--agent', 'lc-bot', '--scope', 'travel:search travel:book', '--audience', api.url);
  const session = await authenticateWithProton({
    broker: broker.url, audience: api.url, store: 'memory', agentName: 'lc-bot',
    scope: ['travel:search', 'travel:book'], enrollmentCode: g.enrollment_code, revokeOnExit: false,
  });
  const secret = session.headers('GET', `${api.url}/trips`).Authorization.slice('DPoP '.length);

  const tool = createProtonPassTool(session, { baseUrl: api.url });
  const model = fakeModel()
    .respondWithTools([{ name: 'call_api', args: { method: 'GET', path: '/trips', reason: 'find a trip' } }])
    .respondWithTools([{ name: 'call_api', args: { method: 'POST', path: 'bookings', body: { trip: 'GVA-LIS' } } }])
    .respondWithTools([{ name: 'call_api', args: { method: 'GET', path: 'https://elsewhere.example/steal' } }])
    .respond(new AIMessage('Booked GVA-LIS.'));
  const messages = await runAgent(model, [tool], 'Book me a trip to Lisbon');

  const toolResults = messages.filter((m) => m.getType() === 'tool').map((m) => String(m.content));
  assert.equal(toolResults.length, 3);
  assert.match(toolResults[0], /^HTTP 200\n/);
  assert.deepEqual(JSON.parse(toolResults[0].split('\n')[1]).trips, ['GVA-LIS']);
  assert.equal(JSON.parse(toolResults[0].split('\n')[1]).reason, 'find a trip');
  assert.match(toolResults[1], /^HTTP 201\n/);
  assert.match(toolResults[2], /outside the API/);
  assert.equal(messages.at(-1).content, 'Booked GVA-LIS.');
  // Nothing the model was given carries the token or a proof.
  const seen = JSON.stringify(model.calls.map((c) => c.messages));
  assert.ok(!seen.includes(secret), 'the token reached the model');
  assert.ok(!/DPoP [\w-]+\./.test(seen), 'an Authorization header reached the model');
  assert.equal(model.callCount, 4);
  await session.close();
});

test('the tool stays under its base path, however the path is written', async (t) => {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const api = await startRecorder();
  t.after(() => api.close());
  // The session may call the whole origin; the tool only /api.
  const g = await broker.cliJson('grant', 'create', '--agent', 'lc-path-bot', '--scope', 'travel:search', '--audience', api.url);
  const session = await authenticateWithProton({
    broker: broker.url, audience: api.url, store: 'memory', agentName: 'lc-path-bot',
    scope: ['travel:search'], enrollmentCode: g.enrollment_code, revokeOnExit: false,
  });
  const tool = createProtonPassTool(session, { baseUrl: `${api.url}/api` });
  const call = async (path) => String(await tool.invoke({ method: 'GET', path }));

  assert.match(await call('/trips?from=GVA'), /^HTTP 200\n/);
  assert.match(await call('a/%2e%2e/trips'), /^HTTP 200\n/);
  assert.deepEqual(api.seen.map((r) => r.path), ['/api/trips?from=GVA', '/api/trips']);
  const escapes = [
    '../admin', '/../admin', '..', '%2e%2e/admin', '%2E%2E/admin', '..%2fadmin', '..%2Fadmin',
    '..%5cadmin', '..\\admin', 'x/..%2f..%2fadmin', '%2e%2e%5cadmin', './../admin',
    'https://elsewhere.example/steal', 'http:/admin',
  ];
  for (const path of escapes) assert.match(await call(path), /outside the API/, path);
  assert.equal(api.seen.length, 2, 'a refused call reached the server');
  await session.close();
});
