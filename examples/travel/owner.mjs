// The owner's side of the demo for the Node agents: run.sh plays the person and
// answers through a channel directory (TRAVEL_DEMO_CHANNEL). The agent drops
// `approve.CODE.req` (the device prompt) or `revoke.NAME.req` (the turn of the
// story where the owner cuts the agent off); run.sh acts and writes `.done`.
import fs from 'node:fs';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function ownerRequest(channel, action, arg) {
  if (!channel) return null;
  const tmp = path.join(channel, `.${action}.${arg}.tmp`);
  fs.writeFileSync(tmp, arg);
  fs.renameSync(tmp, path.join(channel, `${action}.${arg}.req`));
  return path.join(channel, `${action}.${arg}.done`);
}

/** Resolves once the owner revoked `agent` (or, outside the demo, prints what the owner would run). */
export async function ownerRevokes(channel, agent, say) {
  const done = ownerRequest(channel, 'revoke', agent);
  if (!done) return say(`(the owner may now run: protonpass-broker revoke --agent ${agent})`);
  const deadline = Date.now() + 30000;
  while (!fs.existsSync(done)) {
    if (Date.now() > deadline) throw new Error('the owner did not revoke the agent within 30 s');
    await sleep(50);
  }
}
