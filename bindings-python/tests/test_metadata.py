"""RFC 9728 protected-resource metadata: built by the core, served by the
FastAPI helper, announced in the verifier's 401 challenges."""

from __future__ import annotations

import httpx
import pytest

import protonpass_agent
from protonpass_agent import resource_metadata, resource_metadata_path, resource_metadata_url


def test_the_document_is_the_cores() -> None:
    m = resource_metadata(
        "https://api.example/mcp",
        "https://auth.example",
        scopes_supported=["travel:search"],
        resource_documentation="https://docs.example",
    )
    assert m["resource"] == "https://api.example/mcp"
    assert m["authorization_servers"] == ["https://auth.example"]
    assert m["scopes_supported"] == ["travel:search"]
    assert m["dpop_bound_access_tokens_required"] is True
    assert "EdDSA" in m["dpop_signing_alg_values_supported"]
    assert m["resource_documentation"] == "https://docs.example"
    assert resource_metadata_path("https://api.example/mcp") == "/.well-known/oauth-protected-resource/mcp"
    assert (
        resource_metadata_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/.well-known/oauth-protected-resource"
    )


@pytest.mark.parametrize("bad", ["http://api.example/mcp", "https://api.example/?x=1", "not a url"])
def test_bad_resources_are_refused(bad: str) -> None:
    with pytest.raises(protonpass_agent.ProtonPassError) as e:
        resource_metadata(bad, "https://auth.example")
    assert e.value.code == "invalid_target"


def test_bad_scopes_are_refused() -> None:
    with pytest.raises(protonpass_agent.InvalidScope):
        resource_metadata("https://api.example", "https://auth.example", scopes_supported=["not a scope"])


def test_the_api_serves_it_and_points_at_it(broker, api, enroll) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{api.url}/.well-known/oauth-protected-resource")
    assert r.status_code == 200
    m = r.json()
    assert m["resource"] == api.audience
    assert m["authorization_servers"] == [broker.issuer]
    assert "travel:book" in m["scopes_supported"]
    r = httpx.get(f"{api.url}/whoami")
    assert r.status_code == 401
    assert f'resource_metadata="{api.url}/.well-known/oauth-protected-resource"' in r.headers["www-authenticate"]
    with enroll(["travel:search"]) as s:
        r = httpx.post(f"{api.url}/bookings", auth=s.httpx_auth)
        assert r.status_code == 403
        assert 'scope="travel:book"' in r.headers["www-authenticate"]


def test_an_agent_finds_the_broker_from_the_resource(broker, api, agent_name, home, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("PROTONPASS_BROKER_URL", raising=False)
    scopes = "travel:search travel:book payment:execute:under-500"
    g = broker.cli_json("grant", "create", "--agent", agent_name, "--scope", scopes, "--audience", api.audience)
    # No broker URL and no scopes: both come from the API's metadata.
    with protonpass_agent.authenticate_with_proton(
        resource=api.audience, agent_name=agent_name, store=home, enrollment_code=g["enrollment_code"]
    ) as s:
        assert s.scopes == scopes.split()
        r = httpx.post(f"{api.url}/bookings", auth=s.httpx_auth)
        assert r.status_code == 200, r.text
    with pytest.raises(protonpass_agent.InvalidRequest):
        protonpass_agent.authenticate_with_proton(["travel:book"], api.audience, resource="https://other.example")
