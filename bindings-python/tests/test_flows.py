"""Getting a session: device grant, stored grant, enrollment code, scope negotiation."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

import protonpass_agent as pa
from conftest import Api, Approver, Authenticate, Broker, NoPrompt


def test_device_grant_then_stored_grant_without_prompt(
    broker: Broker, api: Api, agent_name: str, home: Path, authenticate: Authenticate
) -> None:
    approver = Approver(broker)
    s = authenticate(
        ["travel:search", "travel:book"],
        store=home,
        prompt=approver,
    )
    with s:
        assert len(approver.prompts) == 1
        p = approver.prompts[0]
        assert p.verification_uri.startswith(broker.issuer)
        assert p.user_code and p.user_code in (p.verification_uri_complete or "")
        assert p.expires_in > 0
        assert sorted(s.scopes) == ["travel:book", "travel:search"]
        assert s.expires_at > 0
        assert s.audiences == [api.audience]
    # The grant is stored in one private file per profile.
    files = list(home.glob("*.json"))
    assert [f.name for f in files] == ["default.json"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600

    none = NoPrompt()
    with pa.authenticate_with_proton(
        ["travel:search"], api.audience, broker=broker.issuer, agent_name=agent_name, store=home, prompt=none
    ) as again:
        assert none.calls == 0
        assert again.scopes == ["travel:search"]
        assert again.thumbprint == s.thumbprint


def test_environment_supplies_omitted_arguments(
    broker: Broker, api: Api, agent_name: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = broker.cli_json(
        "grant", "create", "--agent", agent_name, "--scope", "travel:search", "--audience", api.audience
    )
    monkeypatch.setenv("PROTONPASS_BROKER_URL", broker.issuer)
    monkeypatch.setenv("PROTONPASS_AGENT_NAME", agent_name)
    monkeypatch.setenv("PROTONPASS_PROFILE", "work")
    monkeypatch.setenv("PROTONPASS_ENROLLMENT_CODE", out["enrollment_code"])
    monkeypatch.setenv("PROTONPASS_HOME", str(home))
    with pa.authenticate_with_proton(["travel:search"], api.audience, prompt=NoPrompt()) as s:
        assert s.scopes == ["travel:search"]
    assert (home / "work.json").is_file()


def test_enrollment_code(broker: Broker, api: Api, agent_name: str, home: Path, authenticate: Authenticate) -> None:
    out = broker.cli_json(
        "grant", "create", "--agent", agent_name, "--scope", "travel:search", "--audience", api.audience
    )
    none = NoPrompt()
    with authenticate(
        ["travel:search"],
        store=home,
        prompt=none,
        enrollment_code=out["enrollment_code"],
    ) as s:
        assert s.scopes == ["travel:search"]
    assert none.calls == 0
    # The code is single-use: a second redemption (fresh store) fails.
    with pytest.raises(pa.InvalidGrant) as e:
        authenticate(
            ["travel:search"],
            store="memory",
            profile=agent_name,
            enrollment_code=out["enrollment_code"],
        )
    assert e.value.code == "invalid_grant"


def test_owner_narrows_optional_scopes(
    broker: Broker, api: Api, agent_name: str, home: Path, authenticate: Authenticate
) -> None:
    approver = Approver(broker, "--scope", "travel:search payment:execute:under-100")
    with authenticate(
        ["travel:search", "travel:book", "payment:execute:under-500"],
        store=home,
        prompt=approver,
        required=["travel:search"],
    ) as s:
        assert sorted(s.scopes) == ["payment:execute:under-100", "travel:search"]


def test_missing_required_scope(
    broker: Broker, api: Api, agent_name: str, home: Path, authenticate: Authenticate
) -> None:
    approver = Approver(broker, "--scope", "travel:search")
    with pytest.raises(pa.ScopeNotGranted) as e:
        authenticate(
            ["travel:search", "travel:book"],
            store=home,
            prompt=approver,
        )
    assert e.value.code == "scope_not_granted"
    assert e.value.missing == ["travel:book"]
    assert e.value.granted == ["travel:search"]
    assert "travel:book" in str(e.value) and "extend=True" in str(e.value)
    # The grant it refused was revoked at once, not stored: the next call asks again.
    grants = [g for g in broker.cli_json("grant", "list") if g["agent"] == agent_name]
    assert [g["status"] for g in grants] == ["revoked"], grants
    approver2 = Approver(broker)
    with authenticate(
        ["travel:search", "travel:book"],
        store=home,
        prompt=approver2,
        extend=True,
    ) as s:
        assert len(approver2.prompts) == 1
        assert sorted(s.scopes) == ["travel:book", "travel:search"]
    grants = [g for g in broker.cli_json("grant", "list") if g["agent"] == agent_name]
    assert sorted(g["status"] for g in grants) == ["active", "revoked"], grants


def test_async_device_grant_and_async_with(broker: Broker, api: Api, agent_name: str, home: Path) -> None:
    approver = Approver(broker)

    async def main() -> list[str]:
        s = await pa.authenticate_with_proton_async(
            "travel:search", api.audience, broker=broker.issuer, agent_name=agent_name, store=home, prompt=approver
        )
        async with s:
            scopes = s.scopes
        assert s.closed
        return scopes

    assert asyncio.run(main()) == ["travel:search"]
    assert len(approver.prompts) == 1


def test_memory_store(broker: Broker, api: Api, agent_name: str) -> None:
    approver = Approver(broker)
    with pa.authenticate_with_proton(
        ["travel:search"], api.audience, broker=broker.issuer, agent_name=agent_name, store="memory", prompt=approver
    ):
        pass
    none = NoPrompt()
    with pa.authenticate_with_proton(
        ["travel:search"], api.audience, broker=broker.issuer, agent_name=agent_name, store="memory", prompt=none
    ):
        assert none.calls == 0


def test_passphrase_seals_the_stored_grant(broker: Broker, api: Api, agent_name: str, home: Path) -> None:
    approver = Approver(broker)
    kw = dict(broker=broker.issuer, agent_name=agent_name, store=home)
    with pa.authenticate_with_proton(
        ["travel:search"], api.audience, prompt=approver, passphrase="correct horse", **kw
    ):
        pass
    stored = (home / "default.json").read_text()
    assert '"d"' not in stored  # no private JWK in the clear
    none = NoPrompt()
    with pa.authenticate_with_proton(["travel:search"], api.audience, prompt=none, passphrase="correct horse", **kw):
        assert none.calls == 0
    with pytest.raises(pa.StorageError) as e:
        pa.authenticate_with_proton(["travel:search"], api.audience, prompt=none, passphrase="wrong", **kw)
    assert e.value.code == "storage_error"
