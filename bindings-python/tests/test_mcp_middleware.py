"""``protonpass_agent.mcp`` as plain ASGI (no MCP SDK in this venv: tests/mcp runs
the real SDKs): what the middleware answers, the identity it hands on, and the
scope check of ``require_scope`` outside an MCP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import protonpass_agent
from conftest import Served, free_socket
from kit import Broker
from protonpass_agent.mcp import NoAgent, current_agent, protect, require_scope


@require_scope("travel:book")
def book(flight: str) -> str:
    return f"{current_agent().agent} booked {flight}"


@require_scope("payment:execute", amount="amount")
async def pay(amount: float) -> str:
    return f"paid {amount}"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app standing for the MCP server: it answers with what the tools say."""
    try:
        text = book("TP 1234")
    except PermissionError as e:  # the refusal, when no MCP SDK is installed
        text = str(e)
    try:
        text += " / " + await pay(float(scope["query_string"].decode() or 0))
    except PermissionError as e:
        text += " / " + str(e)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text.encode()})


class Server:
    def __init__(self, broker: Broker, **options: Any) -> None:
        sock = free_socket()
        self.resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        self.app = protect(
            app, issuer=broker.issuer, resource=self.resource, scopes_supported=["travel:book"], **options
        )
        self.served = Served(sock, self.app)

    def close(self) -> None:
        self.served.close()
        self.app.verifier.stop()


@pytest.fixture(scope="module")
def server(broker: Broker) -> Iterator[Server]:
    s = Server(broker)
    yield s
    s.close()


@pytest.fixture(scope="module")
def strict(broker: Broker) -> Iterator[Server]:
    """Every request needs travel:admin."""
    s = Server(broker, scopes=["travel:admin"])
    yield s
    s.close()


def session(broker: Broker, resource: str, scopes: list[str], name: str, home: Path) -> protonpass_agent.Session:
    g = broker.cli_json("grant", "create", "--agent", name, "--scope", " ".join(scopes), "--audience", resource)
    return protonpass_agent.authenticate_with_proton(
        scopes, resource, broker=broker.issuer, agent_name=name, store=home, enrollment_code=g["enrollment_code"]
    )


def test_unauthenticated_requests_get_the_challenge_and_the_metadata(broker: Broker, server: Server) -> None:
    r = httpx.post(server.resource, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    link = protonpass_agent.resource_metadata_url(server.resource)
    assert r.headers["www-authenticate"].startswith("DPoP ")
    assert r.headers["www-authenticate"].count(f'resource_metadata="{link}"') == 1
    meta = httpx.get(link, timeout=10).json()
    assert meta == protonpass_agent.resource_metadata(server.resource, broker.issuer, scopes_supported=["travel:book"])


def test_tools_see_the_caller_and_refuse_what_the_token_lacks(
    broker: Broker, server: Server, agent_name: str, home: Path
) -> None:
    with session(broker, server.resource, ["travel:book", "payment:execute:under-100"], agent_name, home) as s:
        r = httpx.post(f"{server.resource}?50", auth=s.httpx_auth, timeout=10)
        assert r.status_code == 200 and r.text == f"{agent_name} booked TP 1234 / paid 50.0", r.text
        r = httpx.post(f"{server.resource}?150", auth=s.httpx_auth, timeout=10)
        assert r.text.startswith(f"{agent_name} booked TP 1234 / insufficient_scope: "), r.text


def test_a_token_without_the_tool_scope_is_refused_by_the_tool(
    broker: Broker, server: Server, agent_name: str, home: Path
) -> None:
    with session(broker, server.resource, ["travel:search"], agent_name, home) as s:
        r = httpx.post(server.resource, auth=s.httpx_auth, timeout=10)
        assert r.status_code == 200
        assert r.text.startswith("insufficient_scope: ") and "travel:book" in r.text, r.text


def test_scopes_required_of_every_request_are_a_403(
    broker: Broker, strict: Server, agent_name: str, home: Path
) -> None:
    with session(broker, strict.resource, ["travel:book"], agent_name, home) as s:
        r = httpx.post(strict.resource, auth=s.httpx_auth, timeout=10)
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_no_agent_outside_a_verified_request() -> None:
    with pytest.raises(NoAgent):
        current_agent()
    with pytest.raises(NoAgent):
        book("TP 1234")
