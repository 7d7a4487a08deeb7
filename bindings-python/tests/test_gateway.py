"""Agents through the broker's credential-injecting gateway: the installed
package, the real broker, and a real local upstream API that accepts only the
owner's key and records what it received. The agent's code names the
upstream's real URL (`https://api.code-host.example/...`, a host that does not
resolve): the session sends it to the gateway, which injects the key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import httpx
import pytest
import requests

import protonpass_agent
from conftest import Broker, broker_bin
from kit import ROOT
from protonpass_agent.langchain import api_tools

AUD = "https://api.code-host.example"
SECRET = "ghp_python-gateway-secret-7f3a"
NAME = "py-code-host"


class Upstream:
    """A local API that answers only `X-Api-Key: <SECRET>`; records every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        up = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                up.seen.append(
                    {
                        "method": self.command,
                        "target": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                ok = self.headers.get("x-api-key") == SECRET
                out = json.dumps({"ok": ok, "path": self.path}).encode()
                self.send_response(200 if ok else 401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rules(port: int) -> str:
    """The upstream's file: its own lines, then the rules of the gateway
    example's code host (the same API: repo:read and repo:write)."""
    return f"""name = "{NAME}"
base_url = "http://127.0.0.1:{port}"
audience = "{AUD}"
allow_private_network = true
credential = {{ header = "X-Api-Key", value = "{{secret}}" }}
""" + (ROOT / "examples" / "gateway" / "code-host-rules.toml").read_text()


@pytest.fixture(scope="module")
def upstream(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    up = Upstream()
    f = tmp_path_factory.mktemp("rules") / "code-host.toml"
    f.write_text(rules(up.port))
    out = subprocess.run(
        [broker_bin(), "--data", broker.data, "--json", "upstream", "add", str(f), "--secret-stdin"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(out.stdout)["gateway_url"] == f"{broker.issuer}/gateway/{NAME}"
    yield up
    broker.cli("upstream", "remove", NAME)
    up.close()


@pytest.fixture
def session(broker: Broker, upstream: Upstream, agent_name: str) -> Iterator[Callable[..., protonpass_agent.Session]]:
    opened: list[protonpass_agent.Session] = []

    def make(scope: str = "repo:read:proj repo:write:proj") -> protonpass_agent.Session:
        g = broker.cli_json("grant", "create", "--agent", agent_name, "--scope", scope, "--audience", AUD)
        s = protonpass_agent.authenticate_with_proton(
            scope,
            AUD,
            broker=broker.issuer,
            agent_name=agent_name,
            store="memory",
            enrollment_code=g["enrollment_code"],
        )
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def assert_injected(up: Upstream, target: str, method: str = "GET") -> None:
    last = up.seen[-1]
    assert (last["method"], last["target"]) == (method, target)
    assert last["headers"]["x-api-key"] == SECRET
    for h in ("authorization", "dpop", "cookie"):
        assert h not in last["headers"], last["headers"]


def test_the_metadata_names_the_gateway(broker: Broker, upstream: Upstream) -> None:
    meta = httpx.get(f"{broker.issuer}/.well-known/oauth-authorization-server").json()
    assert {"audience": AUD, "gateway_url": f"{broker.issuer}/gateway/{NAME}"} in meta["protonpass_gateways"]


def test_httpx_and_requests_reach_the_upstream_by_its_real_urls(
    broker: Broker, upstream: Upstream, session: Callable[..., protonpass_agent.Session]
) -> None:
    s = session()
    real = f"{AUD}/repos/me/proj/commits?per_page=2"
    assert s.route(real) == f"{broker.issuer}/gateway/{NAME}/repos/me/proj/commits?per_page=2"

    r = httpx.get(real, auth=s.httpx_auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "path": "/repos/me/proj/commits?per_page=2"}
    assert_injected(upstream, "/repos/me/proj/commits?per_page=2")

    r2 = requests.post(f"{AUD}/repos/me/proj/issues", json={"title": "t"}, auth=s.requests_auth, timeout=30)
    assert r2.status_code == 200, r2.text
    assert_injected(upstream, "/repos/me/proj/issues", "POST")
    assert json.loads(upstream.seen[-1]["body"]) == {"title": "t"}

    async def use_async() -> int:
        async with httpx.AsyncClient(auth=s.httpx_auth) as c:
            return (await c.get(f"{AUD}/repos/me/proj")).status_code

    assert asyncio.run(use_async()) == 200
    assert_injected(upstream, "/repos/me/proj")


def test_the_rules_hold_and_the_token_never_goes_elsewhere(
    upstream: Upstream, session: Callable[..., protonpass_agent.Session]
) -> None:
    s = session("repo:read:proj")
    before = len(upstream.seen)
    # Outside the rules or the scopes: refused by the gateway, upstream untouched.
    assert httpx.get(f"{AUD}/repos/me/other", auth=s.httpx_auth).status_code == 403
    assert httpx.post(f"{AUD}/repos/me/proj/issues", json={}, auth=s.httpx_auth).status_code == 403
    assert requests.get(f"{AUD}/repos/me/proj-evil/x", auth=s.requests_auth, timeout=30).status_code == 403
    # Outside the audience: neither rewritten nor signed, nothing sent.
    for url in (
        "https://api.code-host.example.evil.com/repos/me/proj",
        "https://api.code-host.example@evil.example/repos/me/proj",
    ):
        assert s.route(url) == url
        with pytest.raises(protonpass_agent.InvalidRequest):
            httpx.get(url, auth=s.httpx_auth)
    # The upstream itself never gets the token: headers need the routed URL.
    with pytest.raises(protonpass_agent.InvalidRequest):
        s.headers("GET", f"{AUD}/repos/me/proj")
    assert "DPoP" in s.headers("GET", s.route(f"{AUD}/repos/me/proj"))
    assert len(upstream.seen) == before


def test_a_langchain_tool_calls_the_upstream_through_the_gateway(
    upstream: Upstream, session: Callable[..., protonpass_agent.Session]
) -> None:
    s = session("repo:read:proj")
    (tool,) = api_tools(s, AUD)
    out = json.loads(tool.invoke({"method": "GET", "path": "/repos/me/proj/commits", "reason": "summarise"}))
    assert out["status"] == 200, out
    assert json.loads(out["body"])["ok"] is True
    assert_injected(upstream, "/repos/me/proj/commits")
    denied = json.loads(tool.invoke({"method": "GET", "path": "/repos/me/secret-repo"}))
    assert denied["status"] == 403
    assert SECRET not in json.dumps(denied)
