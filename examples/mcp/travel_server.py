"""The travel API as an MCP server (Streamable HTTP at ``/mcp``), protected by the broker's tokens.

    search_flights  needs travel:search
    book_flight     needs travel:book
    pay             needs payment:execute with a limit covering the amount
                    (``payment:execute:under-500`` allows 499.99; the catalog
                    defines payment up to 500 EUR)

Built with the official ``mcp`` SDK: ``FastMCP`` in 1.x, ``MCPServer`` in 2.x
(whichever is installed). Every HTTP request must carry ``Authorization: DPoP
<token>`` for the resource ``http://ADDR/mcp`` and a fresh DPoP proof; refusals
are ``401`` with ``WWW-Authenticate`` (and the RFC 9728 ``resource_metadata``
link). A tool beyond the token's scopes answers ``isError`` with
``insufficient_scope: ...``.

Run: ``python travel_server.py --broker URL --addr 127.0.0.1:PORT [--register] [--accept-bearer]``; the first
stdout line is ``{"event":"listening","url":...,"resource":...}``. With ``--register``, the
resource and its scope catalog are registered with the broker at start, with the one-time
token in ``PROTONPASS_REGISTRATION_TOKEN`` (``protonpass-broker resource invite``); the
credentials it gets back make the verifier report each call to the owner's audit log. With
``--accept-bearer``, MCP clients without DPoP (the official SDKs' own OAuth clients) are served
too, with the short bearer tokens the broker issues them where the owner allows it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
from typing import Any

from protonpass_agent.mcp import current_agent, protect, require_scope

try:  # mcp 2.x
    from mcp.server.mcpserver import MCPServer as Server
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as Server

#: The scope catalog: what the owner reads on the approval page.
SCOPES = [
    {"name": "travel:search", "description": "Search flights", "risk": "low"},
    {"name": "travel:book", "description": "Book flights", "risk": "medium"},
    {"name": "payment:execute:under-500", "description": "Pay up to 500 EUR per payment", "risk": "high"},
]

FLIGHTS = [
    {"flight": "TP 1234", "from": "LIS", "to": "CDG", "date": "2026-12-12", "price": 180},
    {"flight": "AF 1025", "from": "LIS", "to": "CDG", "date": "2026-12-12", "price": 240},
]


def who() -> dict[str, Any]:
    agent = current_agent()
    return {"owner": agent.owner, "agent": agent.agent, "grant": agent.grant_id, "reason": agent.reason}


def make_server() -> Any:
    mcp = Server("travel")
    bookings = itertools.count(1)

    @mcp.tool()
    @require_scope("travel:search")
    def search_flights(to: str = "CDG") -> dict[str, Any]:  # a plain function works too
        """Search flights to a destination airport (IATA code)."""
        return {"flights": [f for f in FLIGHTS if f["to"] == to.upper()], "by": who()}

    # readme:begin mcp-tool
    @mcp.tool()
    @require_scope("travel:book")
    async def book_flight(flight: str) -> dict[str, Any]:
        """Book (hold) a flight by its number."""
        if not any(f["flight"] == flight for f in FLIGHTS):
            raise ValueError(f"no flight {flight}")
        return {"booking": f"BK-{next(bookings):04d}", "flight": flight, "status": "held", "by": who()}

    # readme:end mcp-tool

    @mcp.tool()
    @require_scope("payment:execute", amount="amount")
    async def pay(booking: str, amount: float) -> dict[str, Any]:
        """Pay for a booking (amount in EUR)."""
        return {"booking": booking, "paid": f"{amount:.2f}", "status": "captured", "by": who()}

    return mcp


def make_app(broker: str, resource: str, **options: Any) -> Any:
    """The protected ASGI app; ``options`` go to :func:`protonpass_agent.mcp.protect`."""
    # readme:begin mcp-protect
    return protect(
        make_server().streamable_http_app(),
        issuer=broker,
        resource=resource,
        scopes_supported=[s["name"] for s in SCOPES],
        **options,
    )
    # readme:end mcp-protect


def register(broker: str, resource: str, token: str) -> dict[str, Any]:
    """Register this resource and its scope catalog with the broker (``POST /resource/register``
    with the owner's one-time registration token); returns the resource's client credentials."""
    import urllib.error
    import urllib.request

    body = json.dumps({"resource": resource, "scopes": SCOPES}).encode()
    req = urllib.request.Request(
        f"{broker.rstrip('/')}/resource/register",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise SystemExit(f"registration refused: {e.code} {e.read().decode(errors='replace')[:500]}") from None
    return out


def main() -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True, help="the broker's issuer URL")
    p.add_argument("--addr", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0 picks a free one)")
    p.add_argument("--register", action="store_true", help="register the resource and scopes with the broker")
    p.add_argument(
        "--accept-bearer",
        action="store_true",
        help="also accept bearer tokens, which the broker issues to MCP clients without DPoP "
        "where the owner allows it (protonpass-broker resource bearer URL on)",
    )
    a = p.parse_args()
    host, _, port = a.addr.rpartition(":")
    # IPPROTO_TCP: asyncio turns Nagle off only on sockets that say TCP (the accepted
    # ones inherit it); with proto 0 a response sent as headers then body waits for
    # the client's delayed ACK, up to 40 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    url = f"http://{host}:{sock.getsockname()[1]}"
    resource = f"{url}/mcp"
    options: dict[str, Any] = {}
    if a.register:
        token = os.environ.get("PROTONPASS_REGISTRATION_TOKEN")
        if not token:
            raise SystemExit("--register needs the one-time token in PROTONPASS_REGISTRATION_TOKEN")
        creds = register(a.broker, resource, token)
        # The credentials let the verifier report each call to the owner's audit log.
        options = {"client_id": creds["client_id"], "client_secret": creds["client_secret"], "report_usage": True}
    if a.accept_bearer:
        options["accept_bearer"] = True
    app = make_app(a.broker, resource, **options)
    print(json.dumps({"event": "listening", "url": url, "resource": resource, "registered": a.register}), flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        app.verifier.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
