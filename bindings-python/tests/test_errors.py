"""Each exception class, raised by a real failure, with the core's code."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

import protonpass_agent as pa
from conftest import Api, Approver, Authenticate, Broker


def test_hierarchy_and_codes() -> None:
    classes = {
        pa.ScopeNotGranted: "scope_not_granted",
        pa.InsufficientScope: "insufficient_scope",
        pa.InvalidScope: "invalid_scope",
        pa.AccessDenied: "access_denied",
        pa.Expired: "expired_token",
        pa.InvalidGrant: "invalid_grant",
        pa.InvalidToken: "invalid_token",
        pa.InvalidProof: "invalid_dpop_proof",
        pa.InvalidRequest: "invalid_request",
        pa.BrokerUnavailable: "broker_unavailable",
        pa.InvalidResponse: "invalid_response",
        pa.StorageError: "storage_error",
        pa.BudgetExceeded: "budget_exceeded",
    }
    for cls, code in classes.items():
        assert issubclass(cls, pa.ProtonPassError) and issubclass(cls, Exception)
        assert cls.code == code
        assert cls.__module__ == "protonpass_agent"
    assert pa.Revoked is pa.InvalidGrant


def test_access_denied(broker: Broker, api: Api, agent_name: str, home: Path, authenticate: Authenticate) -> None:
    with pytest.raises(pa.AccessDenied) as e:
        authenticate(
            ["travel:search"],
            store=home,
            prompt=Approver(broker, deny=True),
        )
    assert e.value.code == "access_denied"
    assert "approve" in str(e.value)


def test_expired_device_request(agent_name: str, home: Path) -> None:
    from conftest import Broker as B

    b = B("--device-interval", "0", "--device-ttl", "1s")
    try:
        seen: list[str] = []
        with pytest.raises(pa.Expired) as e:
            pa.authenticate_with_proton(
                ["travel:search"],
                "https://api.example",
                broker=b.issuer,
                agent_name=agent_name,
                store=home,
                prompt=lambda p: seen.append(p.user_code),
            )
        assert e.value.code == "expired_token"
        assert len(seen) == 1
    finally:
        b.close()


def test_revoked_grant_is_invalid_grant_and_forgotten(broker: Broker, api: Api, agent_name: str, home: Path) -> None:
    approver = Approver(broker)
    kw = dict(broker=broker.issuer, agent_name=agent_name, store=home)
    with pa.authenticate_with_proton(["travel:search"], api.audience, prompt=approver, **kw) as s:
        gid = httpx.get(f"{api.url}/whoami", auth=s.httpx_auth).json()["grant_id"]
    broker.revoke(gid)
    with pytest.raises(pa.Revoked) as e:
        pa.authenticate_with_proton(["travel:search"], api.audience, prompt=approver, **kw)
    assert e.value.code == "invalid_grant"
    assert len(approver.prompts) == 1
    # Forgotten: the next call asks the owner again.
    with pa.authenticate_with_proton(["travel:search"], api.audience, prompt=approver, **kw):
        assert len(approver.prompts) == 2


def test_broker_unavailable(home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(pa.BrokerUnavailable) as e:
        pa.authenticate_with_proton(
            ["travel:search"], "https://api.example", broker=f"http://127.0.0.1:{port}", store=home
        )
    assert e.value.code == "broker_unavailable"
    assert "PROTONPASS_BROKER_URL" in str(e.value)


def test_invalid_response(api: Api, home: Path) -> None:
    # An HTTP server that is not a broker.
    with pytest.raises(pa.InvalidResponse) as e:
        pa.authenticate_with_proton(["travel:search"], "https://api.example", broker=api.url, store=home)
    assert e.value.code == "invalid_response"


def test_invalid_scope_and_request(broker: Broker, home: Path) -> None:
    with pytest.raises(pa.InvalidScope) as e:
        pa.authenticate_with_proton(["Travel:Book"], "https://api.example", broker=broker.issuer, store=home)
    assert e.value.code == "invalid_scope"
    with pytest.raises(pa.InvalidRequest) as e2:
        pa.authenticate_with_proton(["travel:book"], "", broker=broker.issuer, store=home)
    assert e2.value.code == "invalid_request"


def test_storage_error(broker: Broker, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(pa.StorageError) as e:
        pa.authenticate_with_proton(
            ["travel:search"], "https://api.example", broker=broker.issuer, store=not_a_dir / "sub"
        )
    assert e.value.code == "storage_error"


def test_verifier_errors(enroll, api: Api, broker: Broker) -> None:
    v = pa.Verifier(broker.issuer, api.audience, follow_feed=False)
    url = f"{api.url}/whoami"
    with pytest.raises(pa.InvalidToken) as e:
        v.verify("GET", url, {})
    assert e.value.code == "invalid_token" and e.value.status == 401
    assert e.value.www_authenticate.startswith("DPoP algs=")
    with enroll(["travel:search"]) as s:
        h = s.headers("GET", url)
        who = v.verify("GET", url, h)
        assert who.scopes == ["travel:search"]
        with pytest.raises(pa.InsufficientScope) as e3:
            who.require("travel:book")
        assert e3.value.status == 403 and 'scope="travel:book"' in e3.value.www_authenticate
        with pytest.raises(pa.InvalidProof) as e4:
            v.verify("GET", url, h)  # replay
        assert e4.value.code == "invalid_dpop_proof" and e4.value.reason == "replay"
        h2 = s.headers("POST", url)
        with pytest.raises(pa.InvalidProof) as e5:
            v.verify("GET", url, h2)
        assert e5.value.reason == "htm"
        assert '"error": "invalid_dpop_proof"' in e5.value.body or '"error":"invalid_dpop_proof"' in e5.value.body
        # A nonce-demanding verifier answers with a fresh nonce.
        vn = pa.Verifier(broker.issuer, api.audience, follow_feed=False, require_nonce=True)
        with pytest.raises(pa.InvalidProof) as e6:
            vn.verify("GET", url, s.headers("GET", url))
        assert e6.value.code == "use_dpop_nonce" and e6.value.dpop_nonce
    v.stop()


def _spec_classes() -> list[tuple[str, list[str]]]:
    md = (Path(__file__).resolve().parents[2] / "spec" / "08-errors.md").read_text()
    block = md.split("<!-- table: sdk-error-classes")[1].split("<!-- /table -->")[0]
    rows = []
    for line in block.splitlines():
        if line.startswith("| `"):
            cls, codes = line.split("|")[1:3]
            rows.append((cls.strip().strip("`"), re.findall(r"`([a-z_]+)`", codes)))
    return rows


def test_error_classes_are_named_as_in_the_spec_and_as_in_node() -> None:
    rows = _spec_classes()
    assert len(rows) >= 12, rows
    for name, codes in rows:
        cls = getattr(pa, name)
        assert cls.__name__ == name
        assert issubclass(cls, pa.ProtonPassError)
        assert cls.code == codes[0]
    assert pa.Revoked is pa.InvalidGrant
