"""Shared helpers: the core's interop CLI and small JOSE utilities.

The CLI is the example `interop` of the core crate. `run.sh` builds it and
passes its path in INTEROP_BIN; without that, it is built here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def _build_cli() -> str:
    out = subprocess.run(
        [
            "cargo",
            "build",
            "--quiet",
            "-p",
            "protonpass-agent",
            "--example",
            "interop",
            "--message-format=json",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "interop":
            return msg["executable"]
    raise RuntimeError("cargo built no `interop` executable")


@pytest.fixture(scope="session")
def cli() -> Cli:
    path = os.environ.get("INTEROP_BIN") or _build_cli()
    assert Path(path).is_file(), f"interop CLI not found at {path}"
    return Cli(path)


class Cli:
    """The core, driven through its interop example."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _run(self, args: list[str], stdin: str = "") -> tuple[int, dict[str, Any]]:
        r = subprocess.run(
            [self.path, *args], input=stdin, capture_output=True, text=True, timeout=30
        )
        assert r.returncode in (0, 1), f"interop {args[0]} failed: {r.stderr}"
        return r.returncode, json.loads(r.stdout)

    def make(self, **opts: str) -> dict[str, Any]:
        args = ["make"]
        for k, v in opts.items():
            args += [f"--{k}", v]
        code, out = self._run(args)
        assert code == 0
        return out

    def verify_proof(
        self,
        proof: str,
        method: str,
        url: str,
        now: int | None = None,
        jkt: str | None = None,
        ath_token: str | None = None,
    ) -> dict[str, Any]:
        args = [
            "verify-proof",
            "--method",
            method,
            "--url",
            url,
            "--now",
            str(int(time.time()) if now is None else now),
        ]
        if jkt is not None:
            args += ["--jkt", jkt]
        if ath_token is not None:
            args += ["--ath-token", ath_token]
        code, out = self._run(args, proof)
        assert (code == 0) == out["ok"], out
        return out

    def verify_request(self, request: dict[str, Any]) -> dict[str, Any]:
        code, out = self._run(["verify-request"], json.dumps(request))
        assert (code == 0) == out["ok"], out
        return out

    def thumbprint(self, jwk: dict[str, Any]) -> str:
        code, out = self._run(["thumbprint"], json.dumps(jwk))
        assert code == 0, out
        return out["jkt"]


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ath(token: str) -> str:
    """The `ath` claim: base64url SHA-256 of the access token (RFC 9449 4.2)."""
    return b64u(hashlib.sha256(token.encode()).digest())


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, computed independently of any library."""
    required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canon = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canon.encode()).digest())


def segments(jwt_text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (for tampering)."""
    h, p, _ = jwt_text.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p))


def with_claims(jwt_text: str, **changes: Any) -> str:
    """The same JWS with changed claims and the original signature."""
    h, p, s = jwt_text.split(".")
    claims = json.loads(b64u_decode(p))
    claims.update(changes)
    return ".".join([h, b64u(json.dumps(claims, separators=(",", ":")).encode()), s])
