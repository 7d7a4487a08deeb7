// ES module entry point of protonpass-agent/langchain.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const { createProtonPassTool, apiUrl } = require('./langchain.js');
