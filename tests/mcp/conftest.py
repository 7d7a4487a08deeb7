"""The MCP end-to-end kit: the real broker, the example MCP servers (Python and
Node) and the example agents, each its own process. ``MCP_LINE`` (``mcp1`` or
``mcp2``, set by run.sh) says which Python SDK line this venv holds."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXAMPLE = ROOT / "examples" / "mcp"
sys.path.insert(0, str(ROOT / "tests" / "cross"))

from procs import Broker, Proc  # noqa: E402
from protonpass_agent import Session, authenticate_with_proton_async  # noqa: E402

# The `broker` fixture.
pytest_plugins = ["shared_fixtures"]

LINE = os.environ.get("MCP_LINE", "mcp1")
SCOPES = "travel:search travel:book payment:execute:under-500"
_n = itertools.count()


def agent_name(tag: str) -> str:
    return f"mcp-{tag}-{os.getpid()}-{next(_n)}"


@pytest.fixture(scope="module")
def py_server(broker: Broker) -> Iterator[str]:
    """The Python example server (this venv's mcp line); its MCP endpoint (the resource)."""
    p = Proc([sys.executable, str(EXAMPLE / "travel_server.py"), "--broker", broker.issuer])
    yield str(p.first["resource"])
    p.stop()


@pytest.fixture(scope="module")
def node_server(broker: Broker) -> Iterator[str]:
    """The Node example server (@modelcontextprotocol/sdk + Express)."""
    p = Proc(["node", str(EXAMPLE / "travel_server.mjs"), "--broker", broker.issuer])
    yield str(p.first["resource"])
    p.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registered_server(broker: Broker, *options: str) -> Proc:
    """The Python example server with ``--register``: on a free port, it
    registers its resource and scope catalog with the one-time token of a
    ``resource invite`` for its URL (read from its environment)."""
    port = free_port()
    invite = json.loads(broker.cli("resource", "invite", f"http://127.0.0.1:{port}/mcp", "--json"))
    env = {**os.environ, "PROTONPASS_REGISTRATION_TOKEN": invite["registration_token"]}
    argv = [sys.executable, str(EXAMPLE / "travel_server.py"), "--broker", broker.issuer, "--addr", f"127.0.0.1:{port}"]
    return Proc([*argv, "--register", *options], env=env)


def grant(broker: Broker, name: str, resource: str, scope: str = SCOPES) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(
        broker.cli("grant", "create", "--agent", name, "--scope", scope, "--audience", resource, "--json")
    )
    return out


async def enrolled_session(broker: Broker, resource: str, name: str, scope: str = SCOPES) -> Session:
    """A session of a new agent ``name`` for ``resource``, enrolled with the
    code of a new grant of ``scope`` (memory store)."""
    return await authenticate_with_proton_async(
        scope.split(),
        resource,
        broker=broker.issuer,
        agent_name=name,
        store="memory",
        enrollment_code=broker.enrollment_code(name, scope, resource),
    )


def run_agent(
    broker: Broker, argv: list[str], resource: str, *, revoke: bool = False, scope: str = SCOPES, discover: bool = False
) -> list[dict[str, Any]]:
    """Run an example agent with a fresh pre-authorized grant; its JSON events.
    With ``revoke``, the owner revokes the grant once the agent waits for it;
    with ``discover``, the agent is not told the broker (RFC 9728 discovery)."""
    name = agent_name("agent")
    g = grant(broker, name, resource, scope)
    with tempfile.TemporaryDirectory(prefix="pp-mcp-home-") as home:
        env = {
            **os.environ,
            "PROTONPASS_HOME": home,
            "PROTONPASS_AGENT_NAME": name,
            "PROTONPASS_ENROLLMENT_CODE": g["enrollment_code"],
        }
        env.pop("PROTONPASS_BROKER_URL", None)
        told = [] if discover else ["--broker", broker.issuer]
        args = [*argv, *told, "--server", resource, *(["--until-revoked"] if revoke else [])]
        events = []
        with (
            tempfile.TemporaryFile(mode="w+") as errors,
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True, env=env) as proc,
        ):
            assert proc.stdout is not None
            for line in proc.stdout:
                ev = json.loads(line)
                events.append(ev)
                if ev["event"] == "waiting_for_revocation":
                    broker.cli("revoke", "--", g["grant_id"])
            rc = proc.wait(30)
            errors.seek(0)
            err = errors.read()
    assert rc == 0, f"{args} exited {rc}:\n{err[-3000:]}"
    return events


def event(events: list[dict[str, Any]], name: str) -> Optional[dict[str, Any]]:
    return next((e for e in events if e["event"] == name), None)
