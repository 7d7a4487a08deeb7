"""The verifier as owners rely on it: usage reports to the broker's audit
(allowed and refused requests, with codes), one owner per API, and DPoP
``htu`` checked against the configured public URL, never the ``Host`` header."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

import protonpass_agent as pa
from conftest import Broker
from protonpass_agent.fastapi import require_scope

BASE = "http://api.test"
_n = itertools.count()


def app_for(verifier: pa.Verifier) -> FastAPI:
    app = FastAPI()

    @app.get("/trips")
    async def trips(who: pa.Identity = Depends(require_scope("travel:search", verifier=verifier))) -> dict[str, Any]:
        return {"owner": who.owner, "agent": who.agent}

    @app.post("/bookings")
    async def bookings(who: pa.Identity = Depends(require_scope("travel:book", verifier=verifier))) -> dict[str, Any]:
        return {"booked": True}

    return app


def enroll(broker: Broker, home: Path, owner: str, audience: str) -> pa.Session:
    agent = f"{owner}-py-bot-{next(_n)}"
    g = broker.cli_json(
        "--owner", owner, "grant", "create", "--agent", agent, "--scope", "travel:search", "--audience", audience
    )
    (home / agent).mkdir()
    return pa.authenticate_with_proton(
        ["travel:search"],
        audience,
        broker=broker.issuer,
        agent_name=agent,
        store=home / agent,
        enrollment_code=g["enrollment_code"],
    )


def usage(broker: Broker, client_id: str, n: int) -> list[dict[str, Any]]:
    """The ``usage`` records of resource ``client_id`` once there are ``n`` (reports are batched)."""
    deadline = time.monotonic() + 20
    while True:
        recs = [json.loads(line) for line in broker.cli("audit", "export", "--json").splitlines()]
        out = [
            {"owner": r["owner"], **json.loads(r["detail"])}
            for r in recs
            if r["event"] == "usage" and json.loads(r["detail"]).get("resource") == client_id
        ]
        if len(out) >= n or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


@pytest.fixture
def audience() -> str:
    return f"{BASE}/py-{next(_n)}"


@pytest.fixture
def client(broker: Broker, audience: str) -> Iterator[tuple[TestClient, pa.Verifier, dict[str, str]]]:
    rs = broker.cli_json("resource", "add", audience)
    # The API is served under its audience's path: a session sends its token
    # only to URLs under its audience.
    v = pa.Verifier(
        broker.issuer,
        audience,
        base_url=audience,
        owner="default",
        client_id=rs["client_id"],
        client_secret=rs["client_secret"],
        report_usage=True,
    )
    with TestClient(app_for(v), base_url=BASE) as c:
        yield c, v, rs
    v.stop()


def test_allowed_and_refused_calls_reach_the_owners_audit(broker: Broker, home: Path, audience: str, client) -> None:
    c, _, rs = client
    with enroll(broker, home, "default", audience) as s:
        h = s.headers("GET", f"{audience}/trips", reason="find a train")
        r = c.get("/trips", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["owner"] == "default"
        # Refused by the helper after verification: the scope is missing.
        r = c.post("/bookings", headers=s.headers("POST", f"{audience}/bookings"))
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
        # Refused by the verifier: the same proof twice.
        r = c.get("/trips", headers=h)
        assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof"
        # Refused without a token: reported, unattributed.
        assert c.get("/trips").status_code == 401
        recs = usage(broker, rs["client_id"], 4)
    assert len(recs) == 4, recs
    assert {r["owner"] for r in recs} == {"default"}
    by = {(r["decision"], r["code"]): r for r in recs}
    allowed = by[("allow", None)]
    assert allowed["reason"] == "find a train" and allowed["agent"].startswith("default-py-bot")
    scope = by[("deny", "insufficient_scope")]
    assert scope["scope"] == "travel:book" and scope["agent"] == allowed["agent"]
    replay = by[("deny", "invalid_dpop_proof")]
    assert replay["reason"] == "replay" and replay["jti"] == allowed["jti"]
    anonymous = by[("deny", "invalid_token")]
    assert anonymous["jti"] is None and anonymous["agent"] is None


@pytest.fixture
def bob(broker: Broker, home: Path, audience: str) -> Iterator[pa.Session]:
    """Bob's agent, granted the audience before its owner registers it (from
    then on no other owner can be granted it, but bob's token exists)."""
    broker.cli("owner", "add", "bob")
    with enroll(broker, home, "bob", audience) as s:
        yield s


def test_another_owners_token_is_refused(broker: Broker, home: Path, audience: str, bob: pa.Session, client) -> None:
    c, _, _ = client
    with enroll(broker, home, "default", audience) as mine:
        r = c.get("/trips", headers=bob.headers("GET", f"{audience}/trips"))
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_token"
        assert "(owner)" in r.json()["error_description"]
        r = c.get("/trips", headers=mine.headers("GET", f"{audience}/trips"))
        assert r.status_code == 200 and r.json()["owner"] == "default"


def test_htu_is_checked_against_base_url_not_host(broker: Broker, home: Path, audience: str, client) -> None:
    c, _, _ = client
    with enroll(broker, home, "default", audience) as s:
        # Signed for another URL (the session signs only under its audience),
        # sent with a Host header that would make it match if Host were used.
        evil = s.headers("GET", f"{audience}/elsewhere/trips")
        r = c.get("/trips", headers={**evil, "Host": "evil.example"})
        assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof", r.text
        assert "(htu)" in r.json()["error_description"]
        # The proof for the configured public URL passes, whatever the Host header.
        r = c.get("/trips", headers={**s.headers("GET", f"{audience}/trips"), "Host": "evil.example"})
        assert r.status_code == 200, r.text


def test_helpers_need_a_base_url(broker: Broker, audience: str) -> None:
    v = pa.Verifier(broker.issuer, audience, follow_feed=False)
    try:
        with pytest.raises(RuntimeError, match="base_url"):
            require_scope("travel:search", verifier=v)
        with pytest.raises(ValueError, match="base_url"):
            pa.Verifier(broker.issuer, audience, base_url="http://api.test/?x=1", follow_feed=False)
    finally:
        v.stop()
