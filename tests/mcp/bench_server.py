"""The benchmark's MCP server: one ``echo`` tool, served plain or protected by
``protonpass_agent.mcp`` (same SDK, same transport, same tool body).

Run: ``python bench_server.py [--broker URL]`` (with ``--broker``: protected);
the first stdout line is ``{"event":"listening","resource":...}``."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from protonpass_agent.mcp import current_agent, protect, require_scope

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server


def make_app(broker: str | None, resource: str) -> Any:
    mcp = Server("bench")
    if broker is None:

        @mcp.tool()
        async def echo(text: str) -> str:
            return f"anonymous: {text}"

        return mcp.streamable_http_app()

    @mcp.tool()
    @require_scope("bench:call")
    async def echo(text: str) -> str:  # noqa: F811 - one of the two is defined
        return f"{current_agent().agent}: {text}"

    return protect(mcp.streamable_http_app(), issuer=broker, resource=resource, scopes_supported=["bench:call"])


def main() -> int:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--broker")
    a = p.parse_args()
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on
    # sockets whose protocol says TCP, and the accepted ones inherit it from this one.
    # Without it a response written in two sends (headers, then an SSE event) waits
    # for the client's delayed ACK, up to 40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # before the line below: a client may connect as soon as it reads it
    resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    app = make_app(a.broker, resource)
    print(json.dumps({"event": "listening", "resource": resource}), flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
