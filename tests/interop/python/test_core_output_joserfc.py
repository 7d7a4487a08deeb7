"""joserfc verifies what the core produces: access tokens and DPoP proofs."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidClaimError, SecurityWarning
from joserfc.jwk import KeySet, OKPKey

from conftest import Cli, ath, thumbprint, with_claims


def decode(value: str, key: Any, alg: str) -> jwt.Token:
    """jwt.decode, allowing exactly one algorithm.

    joserfc flags the RFC 8037 name `EdDSA` as deprecated by RFC 9864 and
    verifies it only when the caller allows it explicitly: this is that explicit
    allowance, and only that warning is silenced (every other one is an error).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
        return jwt.decode(value, key, algorithms=[alg])


@pytest.fixture(scope="module")
def made(cli: Cli) -> dict[str, Any]:
    return cli.make()


def test_access_token_verifies_with_the_jwks(made: dict[str, Any]) -> None:
    keys = KeySet.import_key_set(made["jwks"])
    tok = decode(made["token"], keys, "EdDSA")
    assert tok.header == {"typ": "at+jwt", "alg": "EdDSA", "kid": made["kid"]}
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": made["issuer"]},
        aud={"essential": True, "value": made["audience"]},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
        jti={"essential": True},
    ).validate(tok.claims)
    c = tok.claims
    assert c["exp"] - c["iat"] == 3600
    assert c["cnf"] == {"jkt": made["jkt"]}
    assert c["act"] == {"sub": c["client_id"]}
    assert c["scope"].split() == ["travel:search", "travel:book"]


def test_claims_registry_refuses_another_issuer_or_audience(made: dict[str, Any]) -> None:
    tok = decode(made["token"], KeySet.import_key_set(made["jwks"]), "EdDSA")
    for claim in ("iss", "aud"):
        with pytest.raises(InvalidClaimError):
            jwt.JWTClaimsRegistry(
                **{claim: {"essential": True, "value": "https://other.example"}}
            ).validate(tok.claims)


def test_tampered_access_token_is_refused(made: dict[str, Any]) -> None:
    forged = with_claims(made["token"], scope="travel:search travel:book admin:all")
    with pytest.raises(BadSignatureError):
        decode(forged, KeySet.import_key_set(made["jwks"]), "EdDSA")


def test_access_token_does_not_verify_under_another_key(made: dict[str, Any]) -> None:
    other = OKPKey.generate_key("Ed25519")
    with pytest.raises(BadSignatureError):
        decode(made["token"], other, "EdDSA")


def test_dpop_proof_verifies_with_its_embedded_key(made: dict[str, Any]) -> None:
    header = jws.extract_compact(made["proof"].encode()).protected
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "EdDSA"
    assert set(header) == {"typ", "alg", "jwk"}
    key = OKPKey.import_key(header["jwk"])
    assert header["jwk"] == made["agent_jwk"]
    assert key.thumbprint() == made["jkt"] == thumbprint(header["jwk"])

    proof = decode(made["proof"], key, "EdDSA")
    c = proof.claims
    assert c["htm"] == made["method"]
    assert c["htu"] == made["htu"] == "https://api.example/bookings"
    assert c["ath"] == ath(made["token"]) == made["ath"]
    assert abs(c["iat"] - time.time()) < 60
    assert 16 <= len(c["jti"]) <= 256
    # The token is bound to the key that signed the proof.
    tok = decode(made["token"], KeySet.import_key_set(made["jwks"]), "EdDSA")
    assert tok.claims["cnf"]["jkt"] == key.thumbprint()


def test_tampered_dpop_proof_is_refused(made: dict[str, Any]) -> None:
    header = jws.extract_compact(made["proof"].encode()).protected
    forged = with_claims(made["proof"], htm="DELETE")
    with pytest.raises(BadSignatureError):
        decode(forged, OKPKey.import_key(header["jwk"]), "EdDSA")
