"""The test kit shared by the tests, the benchmark and the cross-language and
MCP suites (tests/cross/procs.py): the real broker binary,
started with `serve --addr 127.0.0.1:0 --data DIR`; its first stdout line is
`{"event":"listening","addr":...,"issuer":...}`; and an agent enrolled
through a grant's enrollment code."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional

import protonpass_agent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def broker_bin() -> str:
    """The broker binary: ``PROTONPASS_BROKER_BIN``, else the debug build in
    the Cargo target directory."""
    env = os.environ.get("PROTONPASS_BROKER_BIN")
    if env:
        return env
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    triple = os.environ.get("CARGO_BUILD_TARGET", "")
    for p in (
        target / triple / "debug" / "protonpass-broker",
        target / "debug" / "protonpass-broker",
    ):
        if p.is_file():
            return str(p)
    raise RuntimeError("no broker binary: run `cargo build -p protonpass-broker` or set PROTONPASS_BROKER_BIN")


class Proc:
    """A child process whose first stdout line is a JSON event; the rest of stdout is drained."""

    def __init__(
        self, argv: list[str], *, stdin: bool = False, drain: bool = True, env: Optional[dict[str, str]] = None
    ) -> None:
        self.argv = argv
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{argv[0]} exited before its first line:\n{self.errors()}")
        self.first: dict[str, Any] = json.loads(line)
        self._drain: Optional[threading.Thread] = None
        if drain:
            self._drain = threading.Thread(target=self.proc.stdout.read, daemon=True)
            self._drain.start()

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Write ``request`` as a JSON line to a process started with
        ``stdin=True, drain=False``; its answer, the next JSON line it prints."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(self.argv[:2])} exited:\n{self.errors()}")
        out: dict[str, Any] = json.loads(line)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._drain is not None:
            self._drain.join(5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()
        self.stderr.close()


class Broker:
    """A running `protonpass-broker serve` with a throw-away data directory."""

    def __init__(self, *extra: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pp-broker-")
        self.data = self._tmp.name
        self.extra = list(extra)
        self.p: Optional[Proc] = None
        self.issuer = ""
        self.addr = ""
        self.start()

    def start(self, addr: str = "127.0.0.1:0") -> None:
        self.p = Proc([broker_bin(), "serve", "--addr", addr, "--data", self.data, *self.extra])
        ev = self.p.first
        assert ev["event"] == "listening", ev
        self.addr, self.issuer = ev["addr"], ev["issuer"]

    def stop(self) -> None:
        if self.p is not None:
            self.p.stop()
            self.p = None

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            [broker_bin(), "--data", self.data, *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if r.returncode != 0:
            raise RuntimeError(f"protonpass-broker {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def revoke(self, ident: str) -> None:
        """Revoke a grant or token by id (ids may start with '-')."""
        self.cli("revoke", "--", ident)

    def approve(self, user_code: str, *extra: str) -> None:
        self.cli("approve", user_code, *extra)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()


def enroll_agent(
    broker: Broker, agent_name: str, scopes: list[str], audience: str, store: Any, *grant: str, **options: Any
) -> tuple[protonpass_agent.Session, dict[str, Any]]:
    """A session of ``agent_name`` through a new grant of ``scopes`` on
    ``audience`` (``grant``: more ``grant create`` options), redeemed with its
    enrollment code, so without a prompt; ``options`` go to
    ``authenticate_with_proton``. Returns the session and the grant."""
    out = broker.cli_json(
        "grant", "create", "--agent", agent_name, "--scope", " ".join(scopes), "--audience", audience, *grant
    )
    session = protonpass_agent.authenticate_with_proton(
        scopes,
        audience,
        broker=broker.issuer,
        agent_name=agent_name,
        store=store,
        enrollment_code=out["enrollment_code"],
        **options,
    )
    return session, out
