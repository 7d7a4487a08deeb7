"""The protocol core's building blocks, one function each.

RFC 7638 thumbprints, Ed25519 signatures (RFC 8032, RFC 8037), the DPoP ``ath``
and proof verification (RFC 9449), exactly as the SDK and the broker compute
them: each function is the core's, compiled in. Useful to check a key or a
proof by hand, and what the conformance tests run against ``spec/vectors/``.

Failures raise the package's exceptions: :class:`~protonpass_agent.InvalidProof`
for a refused proof (``.reason`` says which check), ``ProtonPassError`` with
``code == "invalid_key"`` for a refused key or signature,
:class:`~protonpass_agent.InvalidRequest` for an algorithm off the allow-list.
"""

from __future__ import annotations

import json
from typing import Mapping, Union

from . import _native

# The functions that take no JWK are the compiled ones themselves.
from ._native import VerifiedProof, access_token_hash, verify_ed25519, verify_proof

#: A JWK: its JSON text, or the decoded object.
Jwk = Union[str, Mapping[str, object]]

__all__ = [
    "Jwk",
    "VerifiedProof",
    "access_token_hash",
    "jwk_thumbprint",
    "sign_ed25519",
    "verify_ed25519",
    "verify_proof",
    "verify_signature",
]


def _text(jwk: Jwk) -> str:
    return jwk if isinstance(jwk, str) else json.dumps(dict(jwk))


def jwk_thumbprint(jwk: Jwk) -> str:
    """The RFC 7638 SHA-256 thumbprint (base64url) of a JWK, from its required
    members only (RSA, EC, OKP and oct keys); private members are ignored."""
    return _native.jwk_thumbprint(_text(jwk))


def verify_signature(jwk: Jwk, alg: str, message: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``message`` with a public JWK under ``alg``
    (``EdDSA``, ``Ed25519`` or ``ES256``), as a DPoP proof's signature is
    checked: only OKP/Ed25519 and EC/P-256 keys, no private members, no weak
    Ed25519 points. Returns None or raises (``code == "invalid_key"``)."""
    _native.verify_signature(_text(jwk), alg, message, signature)


def sign_ed25519(private_jwk: Jwk, message: bytes) -> bytes:
    """Sign ``message`` with a private Ed25519 JWK (``x``, when present, must
    match ``d``). Deterministic: RFC 8037 A.4 is reproduced byte for byte."""
    return _native.sign_ed25519(_text(private_jwk), message)
