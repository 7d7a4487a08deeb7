"""Smoke check of the abi3 wheel on another CPython (run-tests.sh runs it on
the oldest and newest interpreters it finds): authenticate with an
enrollment code against the real broker, sign, verify, build both auths."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protonpass_agent as pa  # noqa: E402
from kit import Broker, enroll_agent  # noqa: E402


def main() -> None:
    b = Broker("--device-interval", "0")
    try:
        aud = "https://api.smoke.example"
        with enroll_agent(b, "smoke", ["travel:search"], aud, "memory")[0] as s:
            v = pa.Verifier(b.issuer, aud)
            who = v.verify("GET", aud + "/x", s.headers("GET", aud + "/x"))
            assert who.scopes == ["travel:search"]
            assert type(s.httpx_auth).__name__ == "HttpxAuth"
            assert type(s.requests_auth).__name__ == "RequestsAuth"
            v.stop()
        print(f"abi3 smoke ok on Python {sys.version.split()[0]}")
    finally:
        b.close()


if __name__ == "__main__":
    main()
