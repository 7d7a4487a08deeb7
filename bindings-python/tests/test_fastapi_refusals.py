"""The FastAPI helper's refusals as clients read them: the RFC 6749 body
``{"error", "error_description"}`` at the top level (never under ``detail``)
with the ``WWW-Authenticate`` challenge, the amount a 403 needs named in it,
and amounts that are decimal strings, ints or Decimals, never floats."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

import protonpass_agent as pa
from conftest import enroll_agent
from kit import Broker
from protonpass_agent.fastapi import add_error_handler, http_error, require_scope, spend

BASE = "http://pay.test"
# The API is served under its audience's path: a session sends its token only
# to URLs under its audience.
AUDIENCE = f"{BASE}/shop"


def rfc6749(r: Any, code: str) -> str:
    """The body is exactly the RFC 6749 error object; returns its description."""
    body = r.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == code, body
    assert r.headers["cache-control"] == "no-store"
    return str(body["error_description"])


@pytest.fixture(scope="module")
def setup(broker: Broker) -> Iterator[tuple[TestClient, pa.Verifier, str]]:
    audience = AUDIENCE
    rs = broker.cli_json("resource", "add", audience)
    v = pa.Verifier(
        broker.issuer,
        audience,
        base_url=audience,
        client_id=rs["client_id"],
        client_secret=rs["client_secret"],
        follow_feed=False,
    )
    app = FastAPI()

    async def decimal_of(request: Request) -> Decimal:
        return Decimal(request.query_params["a"])

    needs_pay = Depends(require_scope("payment:execute", verifier=v, amount="amount"))
    needs_150 = Depends(require_scope("payment:execute", verifier=v, amount=Decimal("150")))
    needs_computed = Depends(require_scope("payment:execute", verifier=v, amount=decimal_of))
    needs_float = Depends(require_scope("payment:execute", verifier=v, amount=lambda r: 0.1))

    @app.post("/pay")
    async def pay(amount: str, key: str, who: pa.Identity = needs_pay) -> dict[str, str]:
        s = await spend(v, who, "payment:execute", amount, currency="EUR", idempotency_key=key)
        return {"remaining": str(s.remaining)}

    @app.post("/fixed")
    async def fixed(who: pa.Identity = needs_150) -> str:
        return "paid"

    @app.post("/computed")
    async def computed(who: pa.Identity = needs_computed) -> str:
        return "paid"

    @app.post("/float")
    async def float_amount(who: pa.Identity = needs_float) -> str:
        return "never"

    with TestClient(app, base_url=BASE) as c:
        yield c, v, audience
    v.stop()


def test_refusals_are_rfc6749_bodies(broker: Broker, setup: Any, home: Path, agent_name: str) -> None:
    c, _, audience = setup
    # 401 without a token.
    r = c.post("/pay", params={"amount": "1", "key": "k"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("DPoP algs=")
    rfc6749(r, "invalid_token")
    s, _ = enroll_agent(
        broker, agent_name, ["payment:execute:under-100"], audience, home, "--budget", "payment:execute=60/EUR/day"
    )
    with s:

        def post(path: str, **params: str) -> Any:
            query = "&".join(f"{k}={v}" for k, v in params.items())
            url = f"{audience}{path}" + (f"?{query}" if query else "")
            return c.post(path, params=params, headers=s.headers("POST", url))

        # 400: the request names no amount.
        r = post("/pay", key="k")
        assert r.status_code == 400, r.text
        rfc6749(r, "invalid_request")
        # 403 over the token's per-call limit: the challenge names scope and amount.
        r = post("/pay", amount="120.5", key="k1")
        assert r.status_code == 403, r.text
        assert "payment:execute" in rfc6749(r, "insufficient_scope")
        assert r.headers["www-authenticate"].endswith(', scope="payment:execute", amount="120.5"'), r.headers
        # 403 from the helper's spend: budget_exceeded, naming amount and currency.
        assert post("/pay", amount="50", key="k2").json() == {"remaining": "10.00"}
        r = post("/pay", amount="50", key="k3")
        assert r.status_code == 403, r.text
        rfc6749(r, "budget_exceeded")
        www = r.headers["www-authenticate"]
        assert www.startswith('DPoP error="budget_exceeded"'), www
        assert www.endswith(', scope="payment:execute", amount="50", currency="EUR"'), www
        # A constant Decimal amount, and a function returning a Decimal.
        r = post("/fixed")
        assert r.status_code == 403, r.text
        rfc6749(r, "insufficient_scope")
        assert r.headers["www-authenticate"].endswith(', amount="150"'), r.headers
        assert post("/computed", a="99.99").status_code == 200
        assert post("/computed", a="100").status_code == 403
        # A Decimal read from the request that no amount could be (written
        # out it would take a gigabyte), or infinite: the request's fault, 400.
        for huge in ("1E+999999999", "Infinity", "1E-999"):
            r = post("/computed", a=huge)
            assert r.status_code == 400, (huge, r.text)
            rfc6749(r, "invalid_request")
        # A function returning a float is the API's own bug: a clear TypeError.
        with pytest.raises(TypeError, match="float.*decimal string"):
            post("/float")


def test_a_float_amount_is_refused_when_the_route_is_declared(broker: Broker) -> None:
    v = pa.Verifier(broker.issuer, f"{BASE}/f", base_url=BASE, follow_feed=False)
    try:
        with pytest.raises(TypeError, match=r"float \(0\.1\).*pass a decimal string"):
            require_scope("payment:execute", verifier=v, amount=0.1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="bool"):
            require_scope("payment:execute", verifier=v, amount=True)
        with pytest.raises(ValueError, match="finite"):
            require_scope("payment:execute", verifier=v, amount=Decimal("NaN"))
        # ints and Decimals are exact: accepted.
        require_scope("payment:execute", verifier=v, amount=100)
        require_scope("payment:execute", verifier=v, amount=Decimal("99.99"))
    finally:
        v.stop()


def test_an_apps_own_refusal_gets_the_same_body() -> None:
    app = FastAPI()
    add_error_handler(app)

    @app.get("/x")
    async def x() -> None:
        e = pa.InsufficientScope("this needs travel:book")
        e.status = 403  # type: ignore[attr-defined]
        e.www_authenticate = 'DPoP error="insufficient_scope", scope="travel:book"'  # type: ignore[attr-defined]
        raise http_error(e)

    with TestClient(app) as c:
        r = c.get("/x")
    assert r.status_code == 403
    assert rfc6749(r, "insufficient_scope") == "this needs travel:book"
    assert r.headers["www-authenticate"] == 'DPoP error="insufficient_scope", scope="travel:book"'
