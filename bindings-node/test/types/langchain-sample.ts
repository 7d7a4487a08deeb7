// The LangChain.js typings, checked with skipLibCheck (@langchain/core's own
// declarations do not all check under node16 CommonJS resolution).
import type { Session } from 'protonpass-agent';
import { createProtonPassTool } from 'protonpass-agent/langchain';

export async function ask(session: Session): Promise<string> {
  const t = createProtonPassTool(session, { baseUrl: session.audiences[0], methods: ['GET'], maxResponseChars: 2000 });
  const out: unknown = await t.invoke({ method: 'GET', path: 'trips' });
  return `${t.name}: ${String(out)}`;
}
