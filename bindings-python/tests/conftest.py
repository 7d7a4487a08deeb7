"""Fixtures: the real broker binary on loopback, and a small API protected by
the Python verifier (FastAPI served by uvicorn in a thread)."""

from __future__ import annotations

import functools
import itertools
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

import protonpass_agent
from kit import HERE, ROOT, Broker, broker_bin, enroll_agent  # noqa: F401 - re-exported to the tests

_names = itertools.count()


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    b = Broker("--device-interval", "0")
    yield b
    b.close()


class Approver:
    """A prompt callback that approves through the broker's CLI and records each prompt."""

    def __init__(self, broker: Broker, *approve_args: str, deny: bool = False) -> None:
        self.broker = broker
        self.args = approve_args
        self.deny = deny
        self.prompts: list[protonpass_agent.DevicePrompt] = []

    def __call__(self, p: protonpass_agent.DevicePrompt) -> None:
        self.prompts.append(p)
        if self.deny:
            self.broker.cli("deny", p.user_code)
        else:
            self.broker.approve(p.user_code, *self.args)


class NoPrompt:
    """A prompt callback that must not be called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, p: protonpass_agent.DevicePrompt) -> None:
        self.calls += 1


@pytest.fixture
def agent_name() -> str:
    return f"py-agent-{os.getpid()}-{next(_names)}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    d = tmp_path / "home"
    d.mkdir()
    return d


def free_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


class Served:
    """An ASGI app served by uvicorn on a thread of this process, on ``sock``
    (from :func:`free_socket`); started (within 20 s) when built."""

    def __init__(self, sock: socket.socket, app: Any) -> None:
        import uvicorn

        self.sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class Api:
    """A FastAPI app protected by the Python Verifier, served on loopback."""

    def __init__(self, broker: Broker) -> None:
        from api_app import make_app

        sock = free_socket()
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.audience = self.url
        self.app = make_app(broker.issuer, self.audience, self.url)
        self.served = Served(sock, self.app)

    def close(self) -> None:
        self.served.close()
        for v in (self.app.state.protonpass_verifier, self.app.state.nonce_verifier):
            v.stop()


@pytest.fixture(scope="session")
def api(broker: Broker) -> Iterator[Api]:
    sys.path.insert(0, str(HERE))
    a = Api(broker)
    yield a
    a.close()


# `authenticate_with_proton` (or its awaitable twin) with the broker, API and
# agent of the test already given: the test passes the scopes and what it is about.
Authenticate = Callable[..., Any]


@pytest.fixture
def authenticate(broker: Broker, api: Api, agent_name: str) -> Callable[..., protonpass_agent.Session]:
    return functools.partial(
        protonpass_agent.authenticate_with_proton, audience=api.audience, broker=broker.issuer, agent_name=agent_name
    )


@pytest.fixture
def authenticate_async(broker: Broker, api: Api, agent_name: str) -> Callable[..., Awaitable[protonpass_agent.Session]]:
    return functools.partial(
        protonpass_agent.authenticate_with_proton_async,
        audience=api.audience,
        broker=broker.issuer,
        agent_name=agent_name,
    )


@pytest.fixture
def enroll(broker: Broker, api: Api, agent_name: str, home: Path):
    """Authenticate a fresh agent through an enrollment code (no prompt)."""

    def make(scopes: list[str], **kw: Any) -> protonpass_agent.Session:
        return enroll_agent(broker, agent_name, scopes, api.audience, home, **kw)[0]

    return make
