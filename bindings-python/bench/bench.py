"""Benchmark: the cost in Python of the headers for one DPoP-bound request and
of verifying one, with protonpass_agent against joserfc and PyJWT doing the
same work. Run by run-bench.sh against a release build and the real broker.

Each figure is the best of several rounds of many operations (the timeit
convention: the least disturbed round on a shared machine), in microseconds
per operation, with the median of the rounds beside it; the work is identical on both sides: headers =
a fresh Ed25519 DPoP proof (typ, alg, jwk, htm, htu, iat, jti, ath) plus the
Authorization value; verification = access token signature and claims (iss,
aud, exp), proof signature, typ, alg, htm, htu, iat window, ath, key binding
(RFC 7638 thumbprint against cnf.jkt), and jti replay.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import jwt as pyjwt  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from joserfc import jwt as jose_jwt  # noqa: E402
from joserfc.errors import SecurityWarning  # noqa: E402
from joserfc.jwk import KeySet, OKPKey  # noqa: E402

import protonpass_agent as pa  # noqa: E402
from kit import Broker, enroll_agent  # noqa: E402

warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

AUDIENCE = "https://api.bench.example"
URL = AUDIENCE + "/bookings"
ROUNDS = 7


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ath(token: str) -> str:
    return b64u(hashlib.sha256(token.encode()).digest())


def thumbprint(jwk: dict[str, Any]) -> str:
    canon = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"))
    return b64u(hashlib.sha256(canon.encode()).digest())


def timed(fn: Callable[[], Any], n: int) -> float:
    """Microseconds per call over n calls."""
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def interleaved(fns: dict[str, Callable[[], Any]], n: int) -> dict[str, tuple[float, float]]:
    """(best, median) microseconds per call of each function over ROUNDS
    rounds, the functions taking turns within each round so that load on a
    shared machine hits them alike."""
    for fn in fns.values():
        fn()
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(ROUNDS):
        for k, fn in fns.items():
            per[k].append(timed(fn, n))
    return {k: (min(v), statistics.median(v)) for k, v in per.items()}


def bench_headers(session: pa.Session, token: str) -> dict[str, tuple[float, float]]:
    sk = Ed25519PrivateKey.generate()
    pub = json.loads(pyjwt.algorithms.OKPAlgorithm.to_jwk(sk.public_key()))

    def with_pyjwt() -> dict[str, str]:
        claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": secrets.token_urlsafe(16)}
        claims["ath"] = ath(token)
        proof = pyjwt.encode(claims, sk, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": pub})
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    key = OKPKey.generate_key("Ed25519")
    jwk = key.as_dict(private=False)

    def with_joserfc() -> dict[str, str]:
        claims = {"htm": "POST", "htu": URL, "iat": int(time.time()), "jti": secrets.token_urlsafe(16)}
        claims["ath"] = ath(token)
        proof = jose_jwt.encode({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}, claims, key, algorithms=["EdDSA"])
        return {"Authorization": f"DPoP {token}", "DPoP": proof}

    return interleaved(
        {"ours": lambda: session.headers("POST", URL), "pyjwt": with_pyjwt, "joserfc": with_joserfc}, 2000
    )


class JoserfcVerifier:
    """The same checks as the core's verifier, written with joserfc."""

    def __init__(self, jwks: dict[str, Any], issuer: str, audience: str) -> None:
        self.keys = KeySet.import_key_set(jwks)
        self.issuer, self.audience = issuer, audience
        self.seen: set[str] = set()
        self.registry = jose_jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )

    def verify(self, method: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
        scheme, _, token = headers["Authorization"].partition(" ")
        if scheme != "DPoP":
            raise ValueError("scheme")
        at = jose_jwt.decode(token, self.keys, algorithms=["EdDSA"])
        if at.header.get("typ") != "at+jwt":
            raise ValueError("typ")
        self.registry.validate(at.claims)
        proof = headers["DPoP"]
        header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
        if header.get("typ") != "dpop+jwt" or header.get("alg") not in ("EdDSA", "Ed25519"):
            raise ValueError("proof header")
        key = OKPKey.import_key(header["jwk"])
        p = jose_jwt.decode(proof, key, algorithms=["EdDSA"])
        c = p.claims
        now = int(time.time())
        if c["htm"] != method or c["htu"] != url.split("?")[0] or abs(now - c["iat"]) > 60:
            raise ValueError("htm/htu/iat")
        if c.get("ath") != ath(token):
            raise ValueError("ath")
        if thumbprint(header["jwk"]) != at.claims["cnf"]["jkt"]:
            raise ValueError("binding")
        if c["jti"] in self.seen:
            raise ValueError("replay")
        self.seen.add(c["jti"])
        return at.claims


def bench_verify(session: pa.Session, broker: Broker) -> tuple[tuple[float, float], tuple[float, float]]:
    import httpx

    n = 3000
    ours_v = pa.Verifier(broker.issuer, AUDIENCE)
    jwks = httpx.get(broker.issuer + "/jwks.json").json()
    theirs = JoserfcVerifier(jwks, broker.issuer, AUDIENCE)
    results_ours, results_theirs = [], []
    for _ in range(ROUNDS):
        # Fresh proofs every round (each may be used once); the two verifiers take turns.
        hs = [session.headers("POST", URL) for _ in range(n)]
        ours_v.verify("POST", URL, hs[0])
        t = time.perf_counter()
        for h in hs[1:]:
            ours_v.verify("POST", URL, h)
        results_ours.append((time.perf_counter() - t) / (n - 1) * 1e6)
        t = time.perf_counter()
        for h in hs:
            theirs.verify("POST", URL, h)
        results_theirs.append((time.perf_counter() - t) / n * 1e6)
    ours_v.stop()
    return (
        (min(results_ours), statistics.median(results_ours)),
        (min(results_theirs), statistics.median(results_theirs)),
    )


def main() -> None:
    broker = Broker()
    try:
        session, _ = enroll_agent(broker, "bench", ["travel:book"], AUDIENCE, "memory")
        token = session.headers("POST", URL)["Authorization"].split(" ", 1)[1]
        h = bench_headers(session, token)
        (ours, ours_m), (pj, pj_m), (jo, jo_m) = h["ours"], h["pyjwt"], h["joserfc"]
        best = min(pj, jo)
        print(
            f"python headers per request: protonpass_agent {ours:.1f} us (median {ours_m:.1f}), "
            f"PyJWT {pj:.1f} us (median {pj_m:.1f}), joserfc {jo:.1f} us (median {jo_m:.1f}); "
            f"speed-up {best / ours:.2f}x over the faster (median {min(pj_m, jo_m) / ours_m:.2f}x; target 2.5x)"
        )
        (ov, ov_m), (tv, tv_m) = bench_verify(session, broker)
        print(
            f"python verify one DPoP-bound request: protonpass_agent Verifier {ov:.1f} us (median {ov_m:.1f}), "
            f"joserfc {tv:.1f} us (median {tv_m:.1f}); speed-up {tv / ov:.2f}x (median {tv_m / ov_m:.2f}x; target 5x)"
        )
        session.close()
    finally:
        broker.close()


if __name__ == "__main__":
    main()
