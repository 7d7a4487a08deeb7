"""Fixtures: the real broker binary on loopback, and a small API protected by
the Python verifier (FastAPI served by uvicorn in a thread)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

import protonpass_agent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
_names = itertools.count()


def broker_bin() -> str:
    env = os.environ.get("PROTONPASS_BROKER_BIN")
    if env:
        return env
    triple = os.environ.get("CARGO_BUILD_TARGET", "")
    for p in (
        ROOT / "target" / triple / "debug" / "protonpass-broker",
        ROOT / "target" / "debug" / "protonpass-broker",
    ):
        if p.is_file():
            return str(p)
    pytest.fail("no broker binary: run `cargo build -p protonpass-broker` or set PROTONPASS_BROKER_BIN")


class Broker:
    """A running `protonpass-broker serve` with a throw-away data directory."""

    def __init__(self, *extra: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pp-broker-")
        self.data = self._tmp.name
        self.extra = list(extra)
        self.proc: Optional[subprocess.Popen[str]] = None
        self.issuer = ""
        self.addr = ""
        self.start()

    def start(self, addr: str = "127.0.0.1:0") -> None:
        self.proc = subprocess.Popen(
            [broker_bin(), "serve", "--addr", addr, "--data", self.data, *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the broker exited before listening")
        ev = json.loads(line)
        assert ev["event"] == "listening", ev
        self.addr, self.issuer = ev["addr"], ev["issuer"]
        # Drain the rest of stdout so that the broker never blocks on a full pipe.
        out = self.proc.stdout
        self._drain = threading.Thread(target=out.read, daemon=True)
        self._drain.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._drain.join(10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            [broker_bin(), *args, "--data", self.data],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode != 0:
            raise RuntimeError(f"protonpass-broker {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def approve(self, user_code: str, *extra: str) -> None:
        self.cli("approve", user_code, *extra)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()


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


class Api:
    """A FastAPI app protected by the Python Verifier, served on loopback."""

    def __init__(self, broker: Broker) -> None:
        import uvicorn

        from api_app import make_app

        self.sock = free_socket()
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.audience = self.url
        self.app = make_app(broker.issuer, self.audience)
        config = uvicorn.Config(self.app, log_level="error", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test API did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        for v in (self.app.state.protonpass_verifier, self.app.state.nonce_verifier):
            v.stop()


@pytest.fixture(scope="session")
def api(broker: Broker) -> Iterator[Api]:
    sys.path.insert(0, str(HERE))
    a = Api(broker)
    yield a
    a.close()


@pytest.fixture
def enroll(broker: Broker, api: Api, agent_name: str, home: Path):
    """Authenticate a fresh agent through an enrollment code (no prompt)."""

    def make(scopes: list[str], **kw: Any) -> protonpass_agent.Session:
        out = broker.cli_json(
            "grant", "create", "--agent", agent_name, "--scope", " ".join(scopes), "--audience", api.audience
        )
        return protonpass_agent.authenticate_with_proton(
            scopes,
            api.audience,
            broker=broker.issuer,
            agent_name=agent_name,
            store=home,
            enrollment_code=out["enrollment_code"],
            **kw,
        )

    return make
