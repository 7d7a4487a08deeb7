"""A third-party MCP client: the official ``mcp`` SDK's own OAuth client
(``mcp.client.auth.OAuthClientProvider``, no code of this project on the
client side) against the example MCP server protected by the broker.

The client discovers the broker through the server's RFC 9728 metadata,
registers itself (RFC 7591), sends the owner to the broker's consent page
(authorization code + PKCE S256 + RFC 8707 resource), receives the code at a
small loopback callback, gets a token and calls a tool. The test plays the
owner: it signs in to the dashboard over HTTP and approves, and follows the
redirect to the callback as a browser would.

It runs in the mcp 1.x venv. The SDK's client cannot do DPoP, so the owner lets
the resource take bearer tokens (``resource bearer URL on``) and the server
accepts them (``--accept-bearer``)."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from conftest import EXAMPLE, LINE, agent_name, enrolled_session, free_port, registered_server
from procs import Broker, Proc, broker_bin

if LINE != "mcp1":
    pytest.skip("the SDK's OAuth client, in the mcp 1.x venv", allow_module_level=True)
import httpx  # noqa: E402  (the mcp 1.x line's HTTP client; mcp 2.x has httpx2)

PASSWORD = "correct horse battery staple"


class Callback:
    """The loopback redirect URI: records the query of each request to /callback."""

    def __init__(self) -> None:
        received: list[dict[str, str]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                received.append(q)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"You can close this window.")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} in {html[:2000]}"
    return m.group(1).replace("&amp;", "&").replace("&quot;", '"')


class Owner:
    """The owner's browser on the dashboard: cookies kept, redirects not followed."""

    def __init__(self, broker: Broker) -> None:
        subprocess.run(
            [broker_bin(), "--data", broker.data, "owner", "add", "default", "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.web = httpx.Client(base_url=broker.issuer, follow_redirects=False, timeout=30)
        page = self.web.get("/login")
        r = self.web.post(
            "/login",
            data={"csrf": hidden(page.text, "csrf"), "owner": "default", "password": PASSWORD, "next": "/agents"},
        )
        assert r.status_code == 303 and r.headers["location"] == "/agents", r.text
        self.seen: list[str] = []

    def consent(self, authorize_url: str, *, approve: bool = True, scopes: Optional[list[str]] = None) -> str:
        """Open the consent page, answer it; the redirect's Location."""
        page = self.web.get(authorize_url)
        assert page.status_code == 200, page.text
        self.seen.append(page.text)
        form: list[tuple[str, str]] = [
            ("csrf", hidden(page.text, "csrf")),
            ("request", hidden(page.text, "request")),
            ("ttl", "3600"),
            ("action", "approve" if approve else "deny"),
        ]
        offered = re.findall(r'type="checkbox" name="scope" value="([^"]+)"', page.text)
        form += [("scope", s) for s in (scopes if scopes is not None else offered)]
        r = self.web.post(
            "/oauth/authorize",
            content=urllib.parse.urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 303, r.text
        return str(r.headers["location"])

    def close(self) -> None:
        self.web.close()


class MemoryStorage:
    """The SDK's TokenStorage, in memory."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client

    async def set_client_info(self, client_info: Any) -> None:
        self.client = client_info


@pytest.fixture(scope="module")
def bearer_server(broker: Broker) -> Iterator[str]:
    """The example server registered with its catalog, accepting bearer tokens,
    with the owner's consent for bearer tokens on it."""
    p = registered_server(broker, "--accept-bearer")
    resource = str(p.first["resource"])
    broker.cli("resource", "bearer", resource, "on")
    yield resource
    p.stop()


@pytest.fixture(scope="module")
def owner(broker: Broker) -> Iterator[Owner]:
    o = Owner(broker)
    yield o
    o.close()


async def connect_and_search(resource: str, owner: Owner, callback: Callback, storage: MemoryStorage) -> dict[str, Any]:
    """The SDK's client end to end: discovery, registration, consent, token, a tool call."""
    from mcp import ClientSession
    from mcp.client.auth import OAuthClientProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import OAuthClientMetadata

    async def redirect_handler(url: str) -> None:
        # The owner approves in the browser, which then follows the redirect
        # to the client's loopback callback.
        location = await asyncio.to_thread(owner.consent, url)
        assert location.startswith(callback.url + "?"), location
        await asyncio.to_thread(httpx.get, location, timeout=10)

    async def callback_handler() -> tuple[str, Optional[str]]:
        q = callback.received[-1]
        return q["code"], q.get("state")

    provider = OAuthClientProvider(
        server_url=resource,
        client_metadata=OAuthClientMetadata(
            client_name="Desktop assistant (test)",
            redirect_uris=[callback.url],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with (
        httpx.AsyncClient(auth=provider, timeout=30) as client,
        streamable_http_client(resource, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as mcp,
    ):
        await mcp.initialize()
        tools = await mcp.list_tools()
        assert sorted(t.name for t in tools.tools) == ["book_flight", "pay", "search_flights"]
        r = await mcp.call_tool("search_flights", {"to": "CDG"})
        assert not r.isError, r
        text = "".join(getattr(c, "text", "") for c in r.content)
        out: dict[str, Any] = json.loads(text)
        return out


def test_the_official_sdk_oauth_client_connects_through_consent(
    broker: Broker, bearer_server: str, owner: Owner
) -> None:
    callback = Callback()
    storage = MemoryStorage()
    try:
        found = asyncio.run(connect_and_search(bearer_server, owner, callback, storage))
    finally:
        callback.close()
    # The tool saw the owner and the registered client; the consent page showed
    # the catalog's plain words and the name the client gave itself.
    client_id = storage.client.client_id
    assert client_id.startswith("mcp_")
    assert found["by"]["owner"] == "default" and found["by"]["agent"] == client_id, found
    assert "Desktop assistant (test)" in owner.seen[-1]
    assert "Search flights" in owner.seen[-1] and "Pay up to 500 EUR per payment" in owner.seen[-1]
    # The code came back with the client's state and the broker as issuer.
    q = callback.received[-1]
    assert q["iss"] == broker.issuer and q["code"].startswith("ac_") and q["state"]
    # The server's metadata says it takes bearer tokens too.
    meta = httpx.get(bearer_server.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).json()
    assert meta["dpop_bound_access_tokens_required"] is False and meta["authorization_servers"] == [broker.issuer]
    # A bearer token limited to this resource and to 10 minutes.
    token = storage.tokens
    assert token.token_type.lower() == "bearer" and token.expires_in <= 600
    # The code is single-use: the client presenting it again gets invalid_grant.
    again = httpx.post(
        f"{broker.issuer}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": q["code"],
            "redirect_uri": callback.url,
            "client_id": client_id,
            "code_verifier": "x" * 43,
        },
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text


def test_a_token_for_one_resource_is_refused_by_another(
    broker: Broker, bearer_server: str, owner: Owner, py_server: str
) -> None:
    """The token's audience is exactly the approved resource: another MCP server
    of the same broker refuses it, and so does a wrong redirect URI, a missing
    PKCE challenge or a spent code at the broker."""
    callback = Callback()
    storage = MemoryStorage()
    try:
        asyncio.run(connect_and_search(bearer_server, owner, callback, storage))
    finally:
        callback.close()
    token = storage.tokens.access_token
    client_info = {"name": "t", "version": "1"}
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client_info}
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    other = httpx.post(py_server, content=init, headers={**headers, "Authorization": f"Bearer {token}"})
    assert other.status_code == 401, other.text
    mine = httpx.post(bearer_server, content=init, headers={**headers, "Authorization": f"Bearer {token}"})
    assert mine.status_code == 200, mine.text
    # Each kind of token is accepted only with its own scheme, also once the
    # server has verified (and cached) it: a bearer token is no DPoP token...
    as_dpop = httpx.post(bearer_server, content=init, headers={**headers, "Authorization": f"DPoP {token}"})
    assert as_dpop.status_code == 401, as_dpop.text
    # ... and an agent's DPoP-bound token, just used with its proof, is no bearer token.
    name = agent_name("dpop")
    session = asyncio.run(enrolled_session(broker, bearer_server, name, "travel:search"))
    try:
        signed = session.headers("POST", bearer_server)
        ok = httpx.post(bearer_server, content=init, headers={**headers, **signed})
        assert ok.status_code == 200, ok.text
        bound = signed["Authorization"].split(" ", 1)[1]
        stolen = httpx.post(bearer_server, content=init, headers={**headers, "Authorization": f"Bearer {bound}"})
        assert stolen.status_code == 401, stolen.text
    finally:
        session.close()

    client_id = storage.client.client_id
    base = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": storage.client.redirect_uris[0].unicode_string()
        if hasattr(storage.client.redirect_uris[0], "unicode_string")
        else str(storage.client.redirect_uris[0]),
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGKSsw9o_M",
        "code_challenge_method": "S256",
        "state": "s1",
        "scope": "travel:search",
        "resource": bearer_server,
    }

    def authorize(**changes: Optional[str]) -> httpx.Response:
        q = {k: v for k, v in {**base, **changes}.items() if v is not None}
        return owner.web.get("/oauth/authorize?" + urllib.parse.urlencode(q))

    # A redirect URI the client did not register: an error page, no redirect.
    r = authorize(redirect_uri="http://127.0.0.1:1/elsewhere")
    assert r.status_code == 400 and "location" not in r.headers
    # No PKCE: invalid_request for the client, but shown to the owner with a
    # link back rather than redirected to unseen (RFC 9700 section 4.11.2).
    r = authorize(code_challenge=None, code_challenge_method=None)
    assert r.status_code == 400 and "location" not in r.headers
    links = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', r.text)]
    link = next(h for h in links if h.startswith(base["redirect_uri"]))
    back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert back["error"] == "invalid_request" and back["state"] == "s1", back


def test_the_typescript_sdk_oauth_client_connects_through_consent(broker: Broker, owner: Owner) -> None:
    """@modelcontextprotocol/sdk's own OAuth client (examples/mcp/sdk_oauth_client.mjs)
    against the Node example server with `--accept-bearer`: discovery from the
    401, registration, the owner's consent, the code with PKCE, a bearer token,
    and a tool call that sees the registered client."""
    port = free_port()
    server = Proc(
        [
            "node",
            str(EXAMPLE / "travel_server.mjs"),
            "--broker",
            broker.issuer,
            "--addr",
            f"127.0.0.1:{port}",
            "--accept-bearer",
        ]
    )
    resource = str(server.first["resource"])
    callback = Callback()
    client = None
    try:
        broker.cli("resource", "add", resource)
        broker.cli("resource", "bearer", resource, "on")
        client = subprocess.Popen(
            ["node", str(EXAMPLE / "sdk_oauth_client.mjs"), "--server", resource, "--redirect-uri", callback.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None and client.stdin is not None
        first = json.loads(client.stdout.readline() or "{}")
        assert first.get("event") == "authorize", (first, client.stderr.read() if client.stderr else "")
        location = owner.consent(first["url"])
        assert location.startswith(callback.url + "?"), location
        back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        assert back["iss"] == broker.issuer
        out, err = client.communicate(back["code"] + "\n", timeout=60)
        assert client.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        callback.close()
        server.stop()
    assert result["tools"] == ["book_flight", "pay", "search_flights"], result
    assert not result["isError"], result
    found = json.loads(result["text"])
    assert result["clientId"].startswith("mcp_")
    assert found["by"]["owner"] == "default" and found["by"]["agent"] == result["clientId"], found
    assert "TypeScript assistant (test)" in owner.seen[-1]
    assert result["tokenType"].lower() == "bearer" and result["expiresIn"] <= 600, result
