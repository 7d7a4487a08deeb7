"""Spend budgets from a Python API: ``Verifier.spend`` / ``refund`` through the
real broker, the FastAPI helper's 403 ``budget_exceeded`` with its challenge,
and exact decimals (never floats)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import httpx
import pytest

import protonpass_agent as pa
from conftest import Served, enroll_agent, free_socket
from kit import Broker
from protonpass_agent.fastapi import require_scope, spend


class BudgetApi:
    """POST /pay?amount=A&key=K: the token's per-call limit, then the owner's budget."""

    def __init__(self, broker: Broker) -> None:
        from fastapi import Depends, FastAPI

        sock = free_socket()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        rs = broker.cli_json("resource", "add", self.url)
        self.verifier = pa.Verifier(
            broker.issuer,
            self.url,
            base_url=self.url,
            client_id=rs["client_id"],
            client_secret=rs["client_secret"],
            follow_feed=False,
        )
        app = FastAPI()
        v = self.verifier

        needs_pay = require_scope("payment:execute", verifier=v, amount="amount")

        @app.post("/pay")
        async def pay(amount: str, key: str, who: pa.Identity = Depends(needs_pay)) -> dict[str, object]:  # noqa: B008
            s = await spend(v, who, "payment:execute", amount, currency="EUR", idempotency_key=key)
            return {"remaining": str(s.remaining)}

        self.served = Served(sock, app)

    def close(self) -> None:
        self.served.close()
        self.verifier.stop()


@pytest.fixture(scope="module")
def budget_api(broker: Broker) -> Iterator[BudgetApi]:
    a = BudgetApi(broker)
    yield a
    a.close()


def enrolled(broker: Broker, api: BudgetApi, home: Path, agent_name: str, budget: str) -> tuple[pa.Session, str]:
    s, grant = enroll_agent(broker, agent_name, ["payment:execute:under-100"], api.url, home, "--budget", budget)
    return s, grant["grant_id"]


def test_spend_refund_and_budget_exceeded(broker: Broker, budget_api: BudgetApi, home: Path, agent_name: str) -> None:
    s, gid = enrolled(broker, budget_api, home, agent_name, "payment:execute=150/EUR/day")
    pay = lambda amount, key: httpx.post(  # noqa: E731
        f"{budget_api.url}/pay", params={"amount": amount, "key": key}, auth=s.httpx_auth
    )
    r = pay("80", "order-1")
    assert r.status_code == 200, r.text
    assert r.json() == {"remaining": "70.00"}
    # A retry under the same key spends nothing more.
    assert pay("80", "order-1").json() == {"remaining": "70.00"}
    # Beyond the budget: 403 budget_exceeded, with what was needed.
    r = pay("80", "order-2")
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "budget_exceeded"
    www = r.headers["www-authenticate"]
    assert www.startswith('DPoP error="budget_exceeded"'), www
    assert 'scope="payment:execute"' in www and 'amount="80", currency="EUR"' in www, www
    shown = broker.cli_json("grant", "show", gid)
    assert shown["budgets"][0]["spent"] == "80.00"
    assert shown["budgets"][0]["remaining"] == "70.00"


def test_verifier_spend_and_refund_directly(broker: Broker, budget_api: BudgetApi, home: Path, agent_name: str) -> None:
    s, gid = enrolled(broker, budget_api, home, agent_name, "payment:execute=100/EUR/total")
    # The identity of a real verified request.
    url = f"{budget_api.url}/pay?amount=1&key=x"
    who = budget_api.verifier.verify("POST", url, s.headers("POST", url))
    v = budget_api.verifier
    got = v.spend(who, "payment:execute", Decimal("0.10"), currency="EUR", idempotency_key="a")
    assert got.remaining == Decimal("99.90") and got.amount == Decimal("0.10")
    assert got.period == "total" and got.period_ends_at is None and not got.refunded
    got = v.spend(who, "payment:execute", "99.90", currency="EUR", idempotency_key="b")
    assert got.remaining == Decimal("0.00")
    with pytest.raises(pa.BudgetExceeded) as e:
        v.spend(who, "payment:execute", "0.01", currency="EUR", idempotency_key="c")
    assert e.value.code == "budget_exceeded"
    assert e.value.status == 403
    assert "budget_exceeded" in e.value.www_authenticate
    back = v.refund(who, "a")
    assert back.refunded and back.remaining == Decimal("0.10")
    assert v.refund(who, "a") == back
    # Floats are refused before anything is sent; so are sub-cent amounts.
    with pytest.raises(TypeError):
        v.spend(who, "payment:execute", 0.1, currency="EUR", idempotency_key="d")  # type: ignore[arg-type]
    with pytest.raises(pa.InvalidRequest):
        v.spend(who, "payment:execute", "0.001", currency="EUR", idempotency_key="d")
    # Revoking the grant stops spending at once.
    broker.revoke(gid)
    with pytest.raises(pa.InvalidToken) as e2:
        v.spend(who, "payment:execute", "0.05", currency="EUR", idempotency_key="e")
    assert e2.value.status == 401


def test_spend_async(broker: Broker, budget_api: BudgetApi, home: Path, agent_name: str) -> None:
    s, _ = enrolled(broker, budget_api, home, agent_name, "payment:execute=5/EUR/hour")
    url = f"{budget_api.url}/pay"
    v = budget_api.verifier

    async def main() -> None:
        who = await v.verify_async("POST", url, s.headers("POST", url))
        got = await v.spend_async(who, "payment:execute", "5", currency="EUR", idempotency_key="k")
        assert got.remaining == Decimal("0.00") and got.period == "hour"
        with pytest.raises(pa.BudgetExceeded):
            await v.spend_async(who, "payment:execute", "1", currency="EUR", idempotency_key="k2")
        back = await v.refund_async(who, "k")
        assert back.remaining == Decimal("5.00")

    asyncio.run(main())
