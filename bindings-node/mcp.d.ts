// Types of protonpass-agent/mcp: MCP servers (@modelcontextprotocol/sdk) protected by the broker's tokens.
import type { Identity, Middleware, Verifier } from './index'

export interface ProtectOptions {
  /** The broker's issuer URL. */
  issuer: string
  /** The MCP endpoint as clients address it (the tokens' audience), e.g. `https://mcp.example/mcp`. */
  resource: string
  /** The public origin DPoP proofs are checked against (default: the origin of `resource`). */
  baseUrl?: string
  /** A verifier to use instead of one built from `issuer`, `resource` and `baseUrl`. */
  verifier?: Verifier
  /** The owner this server serves (tokens acting for anyone else are refused). */
  owner?: string
  /** A scope every request needs (403 `insufficient_scope` otherwise). */
  scope?: string
  /** The scopes published in the RFC 9728 metadata (built by the core, as `resourceMetadata` builds it). */
  scopesSupported?: string[]
  /** A page about this server, published in the metadata. */
  resourceDocumentation?: string
  /**
   * Also accept bearer tokens (`Authorization: Bearer`, no `cnf`), which the
   * broker issues to MCP clients that cannot do DPoP for resources whose owner
   * allows them; the metadata then says `dpop_bound_access_tokens_required:
   * false`. Default false (DPoP only). A `verifier` passed in must be built
   * with `acceptBearer: true` too.
   */
  acceptBearer?: boolean
}

/** The middleware `protect` returns, with the verifier it uses (call `verifier.stop()` at shutdown). */
export type ProtectMiddleware = Middleware & { verifier: Verifier }

/**
 * Middleware verifying every request to an MCP server; sets `req.agent` and
 * `req.auth` (the SDK's `AuthInfo`, which tools receive as `extra.authInfo`)
 * and serves the RFC 9728 metadata.
 */
export declare function protect(options: ProtectOptions): ProtectMiddleware

/** The verified caller of a tool call (`extra` is the SDK's last callback argument). */
export declare function agentOf(extra: unknown): Identity | undefined

/** What a refused tool call returns. */
export interface RefusedToolResult {
  content: Array<{ type: 'text'; text: string }>
  isError: true
}

/** Wrap a tool callback so that it runs only for a token carrying `scope` (and `amount`, a tool argument's name, within its limit). */
export declare function requireScope<H extends (...params: any[]) => unknown>(
  scope: string,
  handler: H,
  options?: { amount?: string },
): (...params: Parameters<H>) => Promise<Awaited<ReturnType<H>> | RefusedToolResult>
