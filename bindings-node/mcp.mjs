// ES module entry point of protonpass-agent/mcp.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const { protect, requireScope, agentOf } = require('./mcp.js');
