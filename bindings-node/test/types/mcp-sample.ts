// The protonpass-agent/mcp typings: checked by `tsc --noEmit` (the behaviour is
// tested end to end by tests/mcp with the real MCP SDK).
import type { Identity } from 'protonpass-agent';
import { agentOf, protect, requireScope } from 'protonpass-agent/mcp';

export function guard(issuer: string): void {
  const mw = protect({ issuer, resource: 'https://mcp.example/mcp', scopesSupported: ['travel:book'] });
  mw.verifier.stop();
  const open = protect({ issuer, resource: 'https://mcp.example/mcp', acceptBearer: true });
  open.verifier.stop();
}

export const book = requireScope('travel:book', async (args: { flight: string }, extra: unknown) => {
  const who: Identity | undefined = agentOf(extra);
  return { content: [{ type: 'text' as const, text: `${args.flight} for ${who?.owner ?? 'nobody'}` }] };
});

export const pay = requireScope('payment:execute', async (args: { amount: number }) => ({ content: [] }), { amount: 'amount' });
