"""Known-answer tests through the installed package: RFC 8037, RFC 7638,
RFC 9449 and both Wycheproof Ed25519 files, read from ``spec/vectors/`` (the
same cases as the core's ``core/tests/protocol/vectors.rs``)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import pytest

import protonpass_agent as pa
from protonpass_agent import protocol

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    """Strict unpadded base64url: only the canonical encoding of some bytes."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert b64e(data) == text, f"not canonical base64url: {text}"
    return data


def okp(public_key: bytes) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64e(public_key)}


def split(jws: str) -> tuple[dict[str, Any], bytes, bytes]:
    """A compact JWS as (header, signing input, signature)."""
    h, p, s = jws.split(".")
    return json.loads(b64d(h)), f"{h}.{p}".encode(), b64d(s)


# --- RFC 8037 -------------------------------------------------------------


def test_rfc8037_private_jwk_public_key_and_thumbprint() -> None:
    v = load("rfc8037-vectors.json")
    a3 = v["A3_thumbprint"]
    assert hashlib.sha256(a3["canonical_json"].encode()).hexdigest() == a3["sha256_hex"]
    assert b64d(a3["base64url"]) == bytes.fromhex(a3["sha256_hex"])
    # The thumbprint of the public JWK, of the private one (private members
    # do not count), and of the JSON text.
    assert protocol.jwk_thumbprint(v["A2_public_jwk"]) == a3["base64url"]
    assert protocol.jwk_thumbprint(v["A1_private_jwk"]) == a3["base64url"]
    assert protocol.jwk_thumbprint(json.dumps(v["A2_public_jwk"])) == a3["base64url"]
    # A.1 -> A.2: what the private JWK signs verifies under the raw public key.
    x = bytes.fromhex(v["raw_hex"]["x_public"])
    assert b64d(v["A2_public_jwk"]["x"]) == x
    sig = protocol.sign_ed25519(v["A1_private_jwk"], b"A.1")
    protocol.verify_ed25519(x, b"A.1", sig)
    # `x` must be the public key of `d`.
    wrong = dict(v["A1_private_jwk"], x=b64e(bytes(32)))
    with pytest.raises(pa.ProtonPassError) as e:
        protocol.sign_ed25519(wrong, b"A.1")
    assert e.value.code == "invalid_key"


def test_rfc8037_signature_is_reproduced_byte_for_byte_and_verifies() -> None:
    v = load("rfc8037-vectors.json")
    a4 = v["A4_sign"]
    assert b64e(a4["protected_header_json"].encode()) == a4["protected_header_b64url"]
    assert b64e(a4["payload_utf8"].encode()) == a4["payload_b64url"]
    signing_input = a4["signing_input"].encode()
    sig = protocol.sign_ed25519(v["A1_private_jwk"], signing_input)
    assert sig == bytes.fromhex(a4["signature_hex"])
    assert b64e(sig) == a4["signature_b64url"]
    assert f"{a4['signing_input']}.{b64e(sig)}" == a4["jws_compact"]

    # A.5: it verifies, through the raw check and the JWK check, under both
    # names of the algorithm; ES256 is not this key's algorithm.
    assert v["A5_verify"]["expected"] == "valid"
    header, signed, sig = split(a4["jws_compact"])
    assert header == {"alg": "EdDSA"}
    protocol.verify_ed25519(bytes.fromhex(v["raw_hex"]["x_public"]), signed, sig)
    protocol.verify_signature(v["A2_public_jwk"], "EdDSA", signed, sig)
    protocol.verify_signature(v["A2_public_jwk"], "Ed25519", signed, sig)
    with pytest.raises(pa.ProtonPassError) as e:
        protocol.verify_signature(v["A2_public_jwk"], "ES256", signed, sig)
    assert e.value.code == "invalid_key"


def test_rfc8037_derived_negative_cases_are_refused() -> None:
    v = load("rfc8037-vectors.json")
    jwk = v["A2_public_jwk"]
    cases = v["derived_negative_cases_not_from_rfc"]
    assert len(cases) == 6
    for case in cases:
        name = case["name"]
        assert case["expected"] == "reject", name
        header, signed, sig = split(case["jws"])
        if name in ("alg_none_same_payload", "alg_case_variant_NONE"):
            with pytest.raises(pa.InvalidRequest) as req:
                protocol.verify_signature(jwk, header["alg"], signed, sig)
            assert req.value.code == "invalid_request", name
            assert "alg" in str(req.value), name
            # The core's JWS reader refuses it at the allow-list.
            with pytest.raises(pa.InvalidProof) as proof:
                protocol.verify_proof(case["jws"], "GET", "https://api.example/", now=0)
            assert proof.value.reason == "alg", name
        else:
            with pytest.raises(pa.ProtonPassError) as e:
                protocol.verify_signature(jwk, header["alg"], signed, sig)
            assert e.value.code == "invalid_key", f"{name}: {e.value}"
            with pytest.raises(pa.ProtonPassError) as e:
                protocol.verify_ed25519(b64d(jwk["x"]), signed, sig)
            assert e.value.code == "invalid_key", f"{name}: {e.value}"


# --- RFC 7638 -------------------------------------------------------------


def test_rfc7638_thumbprints() -> None:
    v = load("rfc7638-vectors.json")
    vectors = v["vectors"]
    assert len(vectors) == 3
    p9449 = load("rfc9449-vectors.json")["proof_token_endpoint_section_4_1"]
    for t in vectors:
        name, jwk, expected = t["name"], t["jwk"], t["thumbprint_b64url"]
        assert b64e(bytes(t["sha256_octets"])) == expected, name
        assert hashlib.sha256(t["canonical_json"].encode()).digest() == bytes(t["sha256_octets"]), name
        assert protocol.jwk_thumbprint(jwk) == expected, name
        # Optional members never change the thumbprint.
        assert protocol.jwk_thumbprint(dict(jwk, kid="another", use="sig")) == expected, name

    # The key types the core verifies with: a real signature verifies under each.
    by_name = {t["name"]: t["jwk"] for t in vectors}
    a4 = load("rfc8037-vectors.json")["A4_sign"]
    _, signed, sig = split(a4["jws_compact"])
    protocol.verify_signature(by_name["rfc8037_A.3_okp_ed25519"], "EdDSA", signed, sig)
    _, signed, sig = split(p9449["jwt"])
    protocol.verify_signature(by_name["rfc9449_ec_p256_jkt"], "ES256", signed, sig)
    # RSA is not a key type the core verifies with: thumbprint yes, verification no.
    # It is refused at the key (an RSA JWK has no `crv`; with one, its type is named).
    rsa = by_name["rfc7638_3.1_rsa"]
    for jwk, says in ((rsa, "crv"), (dict(rsa, crv="P-256"), "OKP")):
        with pytest.raises(pa.ProtonPassError) as e:
            protocol.verify_signature(jwk, "ES256", signed, sig)
        assert e.value.code == "invalid_key"
        assert says in str(e.value) and "signature" not in str(e.value), e.value


def test_unusable_jwks_are_refused_with_invalid_key() -> None:
    for bad in ['{"kty":"OKP"', "[]", {"kty": "XYZ", "x": "AA"}, {"crv": "Ed25519", "x": "AA"}]:
        with pytest.raises(pa.ProtonPassError) as e:
            protocol.jwk_thumbprint(bad)
        assert e.value.code == "invalid_key", bad


# --- RFC 9449 -------------------------------------------------------------


def test_rfc9449_example_proofs_verify_at_their_iat() -> None:
    v = load("rfc9449-vectors.json")
    jkt = v["jkt_vector_section_6_1"]["jkt"]

    # Section 4.1: the proof sent to the token endpoint.
    p = v["proof_token_endpoint_section_4_1"]
    iat = p["payload"]["iat"]
    method, uri = p["request"]["method"], p["request"]["uri"]
    ok = protocol.verify_proof(p["jwt"], method, uri, now=iat)
    assert isinstance(ok, protocol.VerifiedProof)
    assert (ok.alg, ok.jkt, ok.jti, ok.htm, ok.htu, ok.iat) == ("ES256", jkt, p["payload"]["jti"], "POST", uri, iat)
    assert ok.jwk == p["header"]["jwk"]
    assert ok.nonce is None and ok.reason is None

    # Their iat is from 2019: at any real time (the default clock) they are stale.
    for now in (iat + 11, None):
        with pytest.raises(pa.InvalidProof) as e:
            protocol.verify_proof(p["jwt"], method, uri, now=now)
        assert (e.value.code, e.value.reason) == ("invalid_dpop_proof", "iat")
    # A server that does not take ES256 refuses them at the allow-list.
    with pytest.raises(pa.InvalidProof) as e:
        protocol.verify_proof(p["jwt"], method, uri, now=iat, allow_es256=False)
    assert e.value.reason == "alg"
    # Another method or URL than the one signed.
    with pytest.raises(pa.InvalidProof) as e:
        protocol.verify_proof(p["jwt"], "GET", uri, now=iat)
    assert e.value.reason == "htm"
    with pytest.raises(pa.InvalidProof) as e:
        protocol.verify_proof(p["jwt"], method, "https://server.example.com/other", now=iat)
    assert e.value.reason == "htu"

    # Section 7.1: the proof sent with an access token.
    p = v["proof_resource_request_section_7_1"]
    iat = p["payload"]["iat"]
    method, uri = p["request"]["method"], p["request"]["uri"]
    token = p["request"]["authorization"].removeprefix("DPoP ")
    ok = protocol.verify_proof(p["jwt"], method, uri, now=iat, access_token=token, expected_jkt=jkt)
    assert (ok.jkt, ok.jti, ok.htu) == (jkt, p["payload"]["jti"], uri)
    # The same proof presented with another token fails on ath, with another key binding on key_binding.
    with pytest.raises(pa.InvalidProof) as e:
        protocol.verify_proof(p["jwt"], method, uri, now=iat, access_token="another-token", expected_jkt=jkt)
    assert e.value.reason == "ath"
    with pytest.raises(pa.InvalidProof) as e:
        protocol.verify_proof(p["jwt"], method, uri, now=iat, access_token=token, expected_jkt="x" * 43)
    assert e.value.reason == "key_binding"


def test_rfc9449_ath_and_jkt_vectors() -> None:
    v = load("rfc9449-vectors.json")
    ath = v["ath_vector_section_7_1"]
    assert protocol.access_token_hash(ath["access_token"]) == ath["ath"]
    assert protocol.access_token_hash(ath["access_token"] + "x") != ath["ath"]
    jkt = v["jkt_vector_section_6_1"]
    assert protocol.jwk_thumbprint(jkt["jwk"]) == jkt["jkt"]


# --- Wycheproof -----------------------------------------------------------


def accepted(verify: Callable[..., None], *args: Any) -> bool:
    """Whether a verification passes; a refusal must be `invalid_key`."""
    try:
        verify(*args)
    except pa.ProtonPassError as e:
        assert e.code == "invalid_key", e
        return False
    return True


def run_wycheproof(file: str) -> tuple[int, int, int]:
    """Every case of one file through both verification paths; the
    (valid, invalid, acceptable) counts."""
    v = load(file)
    valid = invalid = acceptable = 0
    disagreements: list[str] = []
    for group in v["testGroups"]:
        # The v1 file names the key `publicKey`, the older one `key`.
        key = group.get("publicKey") or group["key"]
        pk = bytes.fromhex(key["pk"])
        jwk = group.get("publicKeyJwk") or group.get("jwk")
        if jwk is not None:
            assert b64d(jwk["x"]) == pk
        for t in group["tests"]:
            msg, sig = bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])
            verdicts = [
                accepted(protocol.verify_ed25519, pk, msg, sig),
                accepted(protocol.verify_signature, okp(pk), "EdDSA", msg, sig),
            ]
            if t["result"] == "valid":
                valid += 1
                if not all(verdicts):
                    disagreements.append(f"{file} tc {t['tcId']}: valid but refused")
            elif t["result"] == "invalid":
                invalid += 1
                if any(verdicts):
                    disagreements.append(f"{file} tc {t['tcId']}: invalid but accepted")
            elif t["result"] == "acceptable":
                acceptable += 1
            else:
                pytest.fail(f"{file} tc {t['tcId']}: unknown result {t['result']}")
    assert not disagreements, disagreements
    assert valid + invalid + acceptable == v["numberOfTests"], f"{file}: every case was read"
    return valid, invalid, acceptable


def test_wycheproof_ed25519_v1_every_valid_and_invalid_case() -> None:
    assert run_wycheproof("wycheproof/testvectors_v1_ed25519_test.json") == (88, 62, 0)


def test_wycheproof_eddsa_every_valid_and_invalid_case() -> None:
    assert run_wycheproof("wycheproof/testvectors_eddsa_test.json") == (84, 61, 0)
