"""MCP end to end: the example MCP servers protected by the broker's tokens, and
agents reaching them through the official SDKs (Python ``mcp`` 1.x or 2.x, as
this venv holds, and Node's @modelcontextprotocol/sdk), with LangChain adapters.

Every test talks to the real broker, the real servers and the real SDKs over
loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from typing import Any, Optional

import pytest

from conftest import EXAMPLE, LINE, agent_name, enrolled_session, event, grant, registered_server, run_agent
from procs import Broker
from protonpass_agent import Session

PY_AGENT = [sys.executable, str(EXAMPLE / "agent.py")]
NODE_AGENT = ["node", str(EXAMPLE / "agent.mjs")]
MCP2 = int(version("mcp").split(".")[0]) >= 2
mcp1_only = pytest.mark.skipif(LINE != "mcp1", reason="run once, in the mcp 1.x venv")


def test_the_venv_holds_the_line_it_says() -> None:
    assert (LINE == "mcp2") == MCP2, (LINE, version("mcp"))


def check_journey(events: list[dict[str, Any]], *, revoked: bool) -> None:
    tools = event(events, "tools")
    assert tools is not None, events
    assert sorted(tools["names"]) == ["book_flight", "pay", "search_flights"]
    searched = event(events, "searched")
    assert searched is not None, events
    assert searched["by"]["owner"] == "default" and searched["by"]["agent"].startswith("mcp-agent-")
    booked = event(events, "booked")
    assert booked is not None and booked["error"] is False, events
    refused = event(events, "pay_refused")
    assert refused is not None and refused["amount"] == 900, events
    assert "insufficient_scope" in refused["text"], refused
    paid = event(events, "paid")
    assert paid is not None and paid["amount"] == 180 and '"captured"' in paid["text"].replace(" ", ""), events
    if revoked:
        cut = event(events, "cut_off")
        assert cut is not None, events
        assert any("invalid_grant" in e.lower() or "invalidgrant" in e.lower() for e in cut["errors"]), cut


def test_python_agent_on_python_server(broker: Broker, py_server: str) -> None:
    """The mcp client with session.httpx_auth (1.x) or session.httpx2_auth (2.x):
    tools listed, a trip booked and paid, a payment over the limit refused with
    insufficient_scope, and revocation ends the MCP session. The agent is not
    told the broker: it finds it from the server's RFC 9728 metadata."""
    check_journey(run_agent(broker, PY_AGENT, py_server, revoke=True, discover=True), revoked=True)


def test_python_agent_on_node_server(broker: Broker, node_server: str) -> None:
    check_journey(run_agent(broker, PY_AGENT, node_server, revoke=True), revoked=True)


@mcp1_only
def test_python_langchain_agent(broker: Broker, py_server: str) -> None:
    """langchain-mcp-adapters 0.3 (mcp 1.x) loads the tools in one call; a refusal reaches the model's tool message."""
    events = run_agent(broker, [*PY_AGENT, "--langchain"], py_server)
    assert event(events, "tools") == {
        "event": "tools",
        "names": ["search_flights", "book_flight", "pay"],
        "via": "langchain",
    }
    check_journey(events, revoked=False)


@mcp1_only
def test_node_agent_on_python_server(broker: Broker, py_server: str) -> None:
    check_journey(run_agent(broker, NODE_AGENT, py_server, revoke=True), revoked=True)


@mcp1_only
def test_node_agent_on_node_server(broker: Broker, node_server: str) -> None:
    """Discovery too: the Node agent finds the broker from the Node server's metadata."""
    check_journey(run_agent(broker, NODE_AGENT, node_server, revoke=True, discover=True), revoked=True)


@mcp1_only
def test_node_langchain_agent(broker: Broker, node_server: str) -> None:
    """@langchain/mcp-adapters' loadMcpTools over the SDK client whose fetch is session.fetch."""
    events = run_agent(broker, [*NODE_AGENT, "--langchain"], node_server)
    assert event(events, "tools") == {
        "event": "tools",
        "names": ["search_flights", "book_flight", "pay"],
        "via": "langchain",
    }
    check_journey(events, revoked=False)


def http(method: str, url: str, headers: Optional[dict[str, str]] = None, body: Optional[bytes] = None) -> Any:
    """One plain request (no SDK, no retry): (status, headers, body parsed when JSON)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, h, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, h, raw = e.code, e.headers, e.read()
    return status, h, json.loads(raw) if h.get("Content-Type", "").startswith("application/json") else raw


INIT = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
).encode()
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize("server", ["py_server", "node_server"])
def test_unauthenticated_request_is_challenged_with_metadata(
    broker: Broker, server: str, request: pytest.FixtureRequest
) -> None:
    """RFC 9728: a 401 names the metadata, which names the broker; RFC 9449: DPoP is asked for."""
    resource: str = request.getfixturevalue(server)
    status, headers, body = http("POST", resource, MCP_HEADERS, INIT)
    assert status == 401 and body["error"] == "invalid_token", body
    www = headers["WWW-Authenticate"]
    assert www.startswith("DPoP ")
    origin = resource.rsplit("/mcp", 1)[0]
    link = f"{origin}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{link}"' in www
    status, _, meta = http("GET", link)
    assert status == 200
    assert meta["resource"] == resource
    assert meta["authorization_servers"] == [broker.issuer]
    assert set(meta["scopes_supported"]) == {"travel:search", "travel:book", "payment:execute:under-500"}
    assert meta["dpop_bound_access_tokens_required"] is True


@mcp1_only
def test_a_new_agent_asks_the_token_endpoint_once() -> None:
    """The broker gives a DPoP nonce with its metadata, which an agent reads
    just before its first token request: that request carries the nonce and
    is not refused once with use_dpop_nonce (a round trip less before the
    first tool call). A broker of its own, so that nothing is cached."""
    own = Broker()
    try:
        name, resource = agent_name("nonce"), "http://127.0.0.1:9/mcp"
        session = asyncio.run(enrolled_session(own, resource, name, "travel:search"))
        session.close()
        with urllib.request.urlopen(f"{own.issuer}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        token = [
            line
            for line in metrics.splitlines()
            if line.startswith("protonpass_http_requests_total{") and 'route="/oauth/token"' in line
        ]
        assert token and all('status="200"' in line for line in token), token
        assert "use_dpop_nonce" not in metrics
    finally:
        own.close()


@pytest.mark.parametrize("server", ["py_server", "node_server"])
def test_bearer_use_and_a_proof_for_another_url_are_refused(
    broker: Broker, server: str, request: pytest.FixtureRequest
) -> None:
    """The token alone (as a bearer token) is worth nothing, and a proof signed for another URL is refused."""
    resource: str = request.getfixturevalue(server)
    session = asyncio.run(enrolled_session(broker, resource, agent_name("strict")))
    try:
        signed = session.headers("POST", resource)
        token = signed["Authorization"].split(" ", 1)[1]
        status, _, body = http("POST", resource, {**MCP_HEADERS, "Authorization": f"Bearer {token}"}, INIT)
        assert status == 401, body
        other = session.headers("POST", resource + "/other")
        status, _, body = http("POST", resource, {**MCP_HEADERS, **other}, INIT)
        assert status == 401 and body["error"] == "invalid_dpop_proof", body
        status, _, body = http("POST", resource, {**MCP_HEADERS, **signed}, INIT)
        assert status == 200, body
    finally:
        session.close()


def test_each_call_sees_its_own_caller(broker: Broker, py_server: str) -> None:
    """Within one MCP session, current_agent() is the caller of each request: its
    reason, and another agent's identity when another token is sent (never the
    identity of the request that opened the session)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    if MCP2:
        import httpx2 as client_lib
    else:
        import httpx as client_lib  # type: ignore[no-redef]

    def auth(s: Session, reason: str) -> Any:
        return (s.httpx2_auth if MCP2 else s.httpx_auth).with_reason(reason)

    async def who(mcp: ClientSession) -> dict[str, Any]:
        r = await mcp.call_tool("search_flights", {"to": "CDG"})
        text = "".join(getattr(c, "text", "") for c in r.content)
        by: dict[str, Any] = json.loads(text)["by"]
        return by

    async def main() -> None:
        a_name, b_name = agent_name("a"), agent_name("b")
        a, b = await enrolled_session(broker, py_server, a_name), await enrolled_session(broker, py_server, b_name)
        try:
            async with (
                client_lib.AsyncClient(auth=auth(a, "first"), timeout=30) as client,
                streamable_http_client(py_server, http_client=client) as streams,
                ClientSession(streams[0], streams[1]) as mcp,
            ):
                await mcp.initialize()
                first = await who(mcp)
                assert (first["owner"], first["agent"], first["reason"]) == ("default", a_name, "first")
                client.auth = auth(a, "second")
                assert await who(mcp) == {**first, "reason": "second"}
                client.auth = auth(b, "third")
                by = await who(mcp)
                assert (by["agent"], by["reason"]) == (b_name, "third") and by["grant"] != first["grant"]
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(main())


@mcp1_only
def test_server_registers_itself_with_its_scope_catalog(broker: Broker) -> None:
    """--register: the example server registers its resource and catalog with a
    one-time token from `resource invite`; the broker then refuses scopes the
    catalog does not define, and agents work within it."""
    server = registered_server(broker)
    try:
        resource = str(server.first["resource"])
        assert server.first["registered"] is True
        listed = json.loads(broker.cli("resource", "show", resource, "--json"))
        assert {s["name"] for s in listed["scopes"]} == {"travel:search", "travel:book", "payment:execute:under-500"}
        with pytest.raises(RuntimeError, match="invalid_scope"):
            grant(broker, agent_name("evil"), resource, "travel:search-evil")
        check_journey(run_agent(broker, PY_AGENT, resource), revoked=False)
        # With the credentials the registration returned, the server reports
        # each request, the tool refused for its scope included.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            usage = [
                json.loads(r["detail"])
                for r in map(json.loads, broker.cli("audit", "export", "--json").splitlines())
                if r["event"] == "usage"
            ]
            refused = [u for u in usage if u["aud"] == resource and u["code"] == "insufficient_scope"]
            if refused:
                break
            time.sleep(0.2)
        assert refused and refused[0]["scope"] == "payment:execute" and refused[0]["decision"] == "deny", usage
    finally:
        server.stop()
