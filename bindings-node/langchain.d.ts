import type { DynamicStructuredTool } from '@langchain/core/tools'
import type { Session } from './index'

/** Options of `createProtonPassTool`. */
export interface ProtonPassToolOptions {
  /** The API the tool may call (default: the session's first audience). Only URLs under it are called. */
  baseUrl?: string
  /** The tool's name (default `call_api`). */
  name?: string
  /** What the model is told the tool does. */
  description?: string
  /** HTTP methods the model may use (default GET, POST, PUT, PATCH, DELETE). */
  methods?: string[]
  /** A reason signed into every proof when the model gives none. */
  reason?: string
  /** Longest response body handed back to the model (default 4000 characters). */
  maxResponseChars?: number
}

/**
 * A LangChain.js tool that calls the API with the session's credentials. The
 * model picks method, path and body; it sees the status and the response
 * body, never the token or the proofs.
 */
export declare function createProtonPassTool(session: Session, options?: ProtonPassToolOptions): DynamicStructuredTool

/**
 * The URL of `path` (relative to `baseUrl`, with any query string) under
 * `baseUrl`, or `null` when it would leave the base path once normalised (dot
 * segments, `%2e`, `%2f`, `%5c`, backslashes) or is an absolute URL.
 */
export declare function apiUrl(baseUrl: string | URL, path: string): string | null
