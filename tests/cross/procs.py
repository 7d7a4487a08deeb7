"""Processes for the cross-language tests: the real broker, three verifiers
(Python, Node, Rust), each a separate long-running process following the
broker's revocation feed, and a Node agent driven over stdin/stdout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Union

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


sys.path.insert(0, str(ROOT / "bindings-python" / "tests"))

from kit import Broker as KitBroker  # noqa: E402
from kit import Proc, broker_bin  # noqa: E402, F401 - re-exported to the tests


class Broker(KitBroker):
    """The package tests' broker (bindings-python/tests/kit.py), making grants."""

    def enrollment_code(self, agent: str, scope: str, audience: Union[str, list[str]]) -> str:
        auds = [audience] if isinstance(audience, str) else audience
        args = [a for aud in auds for a in ("--audience", aud)]
        out = json.loads(self.cli("grant", "create", "--agent", agent, "--scope", scope, *args, "--json"))
        return str(out["enrollment_code"])


def start_verifiers(issuer: str) -> dict[str, tuple[Proc, str, str]]:
    """The three verifiers, each as its own process on its own port:
    name -> (process, protected URL needing travel:search, its audience).

    Each has its own audience under its own URL: a session sends its token only
    to URLs under its audiences, so an agent calling all three holds a token for
    each (one grant naming the three audiences)."""
    out: dict[str, tuple[Proc, str, str]] = {}
    try:
        py = Proc([sys.executable, str(ROOT / "examples/travel/api.py"), "--issuer", issuer])
        out["python"] = (py, py.first["url"] + "/travel/flights", py.first["audience"])
        node = Proc(["node", str(HERE / "node_verifier.mjs"), "--issuer", issuer])
        out["node"] = (node, node.first["url"] + "/whoami", node.first["audience"])
        rust_bin = os.environ.get("CROSS_VERIFIER_BIN")
        if not rust_bin:
            raise RuntimeError("CROSS_VERIFIER_BIN is not set: run the tests with tests/cross/run.sh")
        rust = Proc([rust_bin, "--issuer", issuer])
        out["rust"] = (rust, rust.first["url"] + "/whoami", rust.first["audience"])
    except BaseException:
        for p, _, _ in out.values():
            p.stop()
        raise
    return out


class NodeAgent:
    """An agent on the Node package, authenticated with an enrollment code, driven line by line."""

    def __init__(self, broker: str, audiences: list[str], name: str, code: str) -> None:
        self.name = name
        self.p = Proc(
            [
                "node",
                str(HERE / "node_agent.mjs"),
                "--broker",
                broker,
                *[a for aud in audiences for a in ("--audience", aud)],
                "--name",
                name,
                "--code",
                code,
            ],
            stdin=True,
            drain=False,
        )
        if self.p.first.get("event") != "ready":
            raise RuntimeError(f"the Node agent did not authenticate: {self.p.first}\n{self.p.errors()}")

    def ask(self, **req: Any) -> dict[str, Any]:
        return self.p.ask(req)

    def close(self) -> None:
        try:
            if self.p.proc.poll() is None:
                self.ask(op="close")
        finally:
            self.p.stop()
