"""The core accepts DPoP proofs and tokens made by Python libraries, and
refuses tampered ones."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt as jose_jwt
from joserfc.jwk import OKPKey

from conftest import Cli, ath, b64u, b64u_decode, thumbprint, with_claims

URL = "https://api.example/bookings?trip=42"
HTU = "https://api.example/bookings"
TOKEN = "an-opaque-access-token-value"


def claims(**extra: Any) -> dict[str, Any]:
    return {
        "jti": secrets.token_urlsafe(24),
        "htm": "POST",
        "htu": HTU,
        "iat": int(time.time()),
        **extra,
    }


def pyjwt_key(alg: str) -> tuple[Any, dict[str, Any]]:
    """A private key and its public JWK, as PyJWT exports it."""
    if alg == "EdDSA":
        sk: Any = Ed25519PrivateKey.generate()
        return sk, json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(sk.public_key()))
    sk = ec.generate_private_key(ec.SECP256R1())
    return sk, json.loads(jwt.algorithms.ECAlgorithm.to_jwk(sk.public_key()))


def pyjwt_proof(alg: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    sk, jwk = pyjwt_key(alg)
    proof = jwt.encode(
        claims(ath=ath(TOKEN), **extra), sk, algorithm=alg, headers={"typ": "dpop+jwt", "jwk": jwk}
    )
    return proof, jwk


def flip_signature_bit(proof: str) -> str:
    h, p, s = proof.split(".")
    sig = bytearray(b64u_decode(s))
    sig[5] ^= 0x01
    return ".".join([h, p, b64u(bytes(sig))])


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_pyjwt_proof_is_accepted(cli: Cli, alg: str) -> None:
    proof, jwk = pyjwt_proof(alg)
    assert jwt.get_unverified_header(proof)["alg"] == alg
    out = cli.verify_proof(proof, "POST", URL, jkt=thumbprint(jwk), ath_token=TOKEN)
    assert out["ok"], out
    assert out["alg"] == alg
    assert out["jkt"] == thumbprint(jwk) == cli.thumbprint(jwk)
    assert out["htu"] == HTU


def test_joserfc_proof_under_the_rfc_9864_name_is_accepted(cli: Cli) -> None:
    key = OKPKey.generate_key("Ed25519")
    jwk = key.as_dict(private=False)
    header = {"alg": "Ed25519", "typ": "dpop+jwt", "jwk": jwk}
    proof = jose_jwt.encode(header, claims(ath=ath(TOKEN)), key, algorithms=["Ed25519"])
    out = cli.verify_proof(proof, "POST", URL, jkt=key.thumbprint(), ath_token=TOKEN)
    assert out["ok"], out
    assert out["alg"] == "Ed25519"
    assert out["jkt"] == key.thumbprint() == thumbprint(jwk)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_tampered_pyjwt_proof_is_refused(cli: Cli, alg: str) -> None:
    proof, _ = pyjwt_proof(alg)
    # A changed claim under the original signature, and a changed signature.
    for forged, method in (
        (with_claims(proof, htm="GET"), "GET"),
        (flip_signature_bit(proof), "POST"),
    ):
        out = cli.verify_proof(forged, method, URL, ath_token=TOKEN)
        assert (out["ok"], out["code"], out["reason"]) == (
            False,
            "invalid_dpop_proof",
            "signature",
        ), out


@pytest.mark.parametrize(
    ("method", "url", "token", "jkt", "reason"),
    [
        ("GET", URL, TOKEN, None, "htm"),
        ("POST", "https://api.example/payments", TOKEN, None, "htu"),
        ("POST", URL, "another-token", None, "ath"),
        ("POST", URL, TOKEN, "x" * 43, "key_binding"),
    ],
)
def test_pyjwt_proof_for_another_request_is_refused(
    cli: Cli, method: str, url: str, token: str, jkt: str | None, reason: str
) -> None:
    proof, _ = pyjwt_proof("EdDSA")
    out = cli.verify_proof(proof, method, url, jkt=jkt, ath_token=token)
    assert (out["ok"], out["code"], out["reason"]) == (False, "invalid_dpop_proof", reason)


def test_stale_pyjwt_proof_is_refused(cli: Cli) -> None:
    proof, _ = pyjwt_proof("EdDSA")
    out = cli.verify_proof(proof, "POST", URL, now=int(time.time()) + 600, ath_token=TOKEN)
    assert (out["ok"], out["reason"]) == (False, "iat")


def test_proof_with_private_key_in_header_is_refused(cli: Cli) -> None:
    sk = Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(sk))  # includes "d"
    assert "d" in jwk
    proof = jwt.encode(claims(), sk, algorithm="EdDSA", headers={"typ": "dpop+jwt", "jwk": jwk})
    out = cli.verify_proof(proof, "POST", URL)
    assert (out["ok"], out["reason"]) == (False, "forbidden_header")


def test_unsigned_and_mac_proofs_are_refused(cli: Cli) -> None:
    _, jwk = pyjwt_key("EdDSA")
    none = jwt.encode(claims(), None, algorithm="none", headers={"typ": "dpop+jwt", "jwk": jwk})
    mac = jwt.encode(claims(), "s" * 32, algorithm="HS256", headers={"typ": "dpop+jwt", "jwk": jwk})
    for proof in (none, mac):
        out = cli.verify_proof(proof, "POST", URL)
        assert (out["ok"], out["reason"]) == (False, "alg"), proof


def test_whole_request_from_a_pyjwt_broker_and_agent(cli: Cli) -> None:
    """PyJWT plays both broker (access token, JWKS) and agent (proof); the core
    accepts the request as a resource server would."""
    now = int(time.time())
    broker, broker_jwk = pyjwt_key("EdDSA")
    agent, agent_jwk = pyjwt_key("EdDSA")
    jwks = {"keys": [{**broker_jwk, "kid": "py-1", "use": "sig", "alg": "EdDSA"}]}
    token = jwt.encode(
        {
            "iss": "https://broker.example",
            "sub": "owner-bob",
            "aud": "https://api.example",
            "client_id": "py-agent",
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_hex(8),
            "scope": "travel:book payment:execute:under-50",
            "cnf": {"jkt": thumbprint(agent_jwk)},
            "gid": "grant-py",
            "act": {"sub": "py-agent"},
        },
        broker,
        algorithm="EdDSA",
        headers={"typ": "at+jwt", "kid": "py-1"},
    )
    proof = jwt.encode(
        claims(ath=ath(token)),
        agent,
        algorithm="EdDSA",
        headers={"typ": "dpop+jwt", "jwk": agent_jwk},
    )
    request = {
        "jwks": jwks,
        "issuer": "https://broker.example",
        "audience": "https://api.example",
        "authorization": f"DPoP {token}",
        "dpop": proof,
        "method": "POST",
        "url": URL,
        "now": now,
    }
    out = cli.verify_request(request)
    assert out["ok"], out
    assert out["claims"]["scope"] == "travel:book payment:execute:under-50"
    assert out["jkt"] == thumbprint(agent_jwk)

    # A thief holding the token but not the agent's key.
    thief, thief_jwk = pyjwt_key("EdDSA")
    stolen = jwt.encode(
        claims(ath=ath(token)),
        thief,
        algorithm="EdDSA",
        headers={"typ": "dpop+jwt", "jwk": thief_jwk},
    )
    out = cli.verify_request({**request, "dpop": stolen})
    assert (out["ok"], out["code"], out["reason"]) == (False, "invalid_dpop_proof", "key_binding")

    # A token widened after signing.
    forged = with_claims(token, scope="travel:book payment:execute")
    proof = jwt.encode(
        claims(ath=ath(forged)),
        agent,
        algorithm="EdDSA",
        headers={"typ": "dpop+jwt", "jwk": agent_jwk},
    )
    out = cli.verify_request({**request, "authorization": f"DPoP {forged}", "dpop": proof})
    assert (out["ok"], out["code"], out["reason"]) == (False, "invalid_token", "signature")


def test_core_token_with_a_foreign_es256_proof_is_refused(cli: Cli) -> None:
    """A core-issued token presented with a valid ES256 proof from another key:
    what a thief who stole the token but not the agent's key can do."""
    made = cli.make()
    sk, jwk = pyjwt_key("ES256")
    proof = jwt.encode(
        claims(ath=ath(made["token"])),
        sk,
        algorithm="ES256",
        headers={"typ": "dpop+jwt", "jwk": jwk},
    )
    out = cli.verify_request(
        {
            "jwks": made["jwks"],
            "issuer": made["issuer"],
            "audience": made["audience"],
            "authorization": f"DPoP {made['token']}",
            "dpop": proof,
            "method": "POST",
            "url": URL,
            "now": made["now"],
        }
    )
    assert (out["ok"], out["code"], out["reason"]) == (False, "invalid_dpop_proof", "key_binding")
