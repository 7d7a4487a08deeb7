"""PyJWT (with cryptography) verifies what the core produces."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import Cli, ath, thumbprint, with_claims

REQUIRED = ["iss", "sub", "aud", "exp", "iat", "jti"]


@pytest.fixture(scope="module")
def made(cli: Cli) -> dict[str, Any]:
    return cli.make(method="GET", url="https://API.example:443/trips/./42?page=2#top")


def verify_token(made: dict[str, Any], token: str) -> dict[str, Any]:
    jwks = jwt.PyJWKSet.from_dict(made["jwks"])
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode_complete(
        token,
        jwks[kid],
        algorithms=["EdDSA"],
        audience=made["audience"],
        issuer=made["issuer"],
        options={"require": REQUIRED},
    )


def test_access_token_verifies_with_the_jwks(made: dict[str, Any]) -> None:
    out = verify_token(made, made["token"])
    assert out["header"] == {"typ": "at+jwt", "alg": "EdDSA", "kid": made["kid"]}
    c = out["payload"]
    assert c["iss"] == made["issuer"] and c["aud"] == made["audience"]
    assert c["cnf"]["jkt"] == made["jkt"]
    assert isinstance(c["gid"], str) and c["act"]["sub"] == c["client_id"]


def test_wrong_audience_and_issuer_are_refused(made: dict[str, Any]) -> None:
    key = jwt.PyJWKSet.from_dict(made["jwks"])[made["kid"]]
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            made["token"],
            key,
            algorithms=["EdDSA"],
            audience="https://other.example",
            issuer=made["issuer"],
        )
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(
            made["token"],
            key,
            algorithms=["EdDSA"],
            audience=made["audience"],
            issuer="https://other.example",
        )


def test_token_issued_two_hours_ago_has_expired(cli: Cli) -> None:
    old = cli.make(now=str(int(time.time()) - 7200))
    with pytest.raises(jwt.ExpiredSignatureError):
        verify_token(old, old["token"])


def test_tampered_access_token_is_refused(made: dict[str, Any]) -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        verify_token(made, with_claims(made["token"], aud="https://api.example", exp=2**40))


def test_access_token_under_another_key_is_refused(made: dict[str, Any]) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(made["token"], other, algorithms=["EdDSA"], audience=made["audience"])


def test_dpop_proof_verifies_with_its_embedded_key(made: dict[str, Any]) -> None:
    header = jwt.get_unverified_header(made["proof"])
    assert header["typ"] == "dpop+jwt" and header["alg"] == "EdDSA"
    assert "kid" not in header
    key = jwt.PyJWK(header["jwk"])
    assert thumbprint(header["jwk"]) == made["jkt"]
    out = jwt.decode_complete(
        made["proof"], key, algorithms=["EdDSA"], options={"require": ["iat", "jti"]}
    )
    c = out["payload"]
    assert c["htm"] == "GET"
    # htu is the normalized URL without query and fragment (RFC 9449 section 4.2).
    assert c["htu"] == made["htu"] == "https://api.example/trips/42"
    assert c["ath"] == ath(made["token"])
    assert abs(c["iat"] - time.time()) < 60


def test_tampered_dpop_proof_is_refused(made: dict[str, Any]) -> None:
    key = jwt.PyJWK(jwt.get_unverified_header(made["proof"])["jwk"])
    forged = with_claims(made["proof"], htu="https://evil.example/trips/42")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key, algorithms=["EdDSA"])
