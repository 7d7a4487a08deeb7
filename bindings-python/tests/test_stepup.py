"""Step-up from a Python agent: a payment above the token's per-call limit is
refused with 403; the session asks the owner (who approves through the CLI
from the prompt callback) and retries once with the one-time token, which
pays once and is refused the second time."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from test_budget import BudgetApi

import protonpass_agent as pa
from conftest import Served, enroll_agent, free_socket
from kit import Broker


@pytest.fixture(scope="module")
def api(broker: Broker) -> Iterator[BudgetApi]:
    a = BudgetApi(broker)
    yield a
    a.close()


def session(
    broker: Broker, api: Any, home: Path, agent_name: str, *, allow: bool, decide: str = "approve"
) -> tuple[pa.Session, list]:
    prompts: list = []

    def approve() -> None:
        waiting = broker.cli_json("stepup", "list")
        broker.cli_json("stepup", decide, waiting[0]["id"])

    def prompt(p: pa.DevicePrompt) -> None:
        prompts.append(p)
        threading.Thread(target=approve).start()

    s, _ = enroll_agent(
        broker, agent_name, ["payment:execute:under-100"], api.url, home,
        "--budget", "payment:execute=300/EUR/day", prompt=prompt, allow_step_up=allow,
    )  # fmt: skip
    return s, prompts


def test_a_payment_above_the_limit_is_approved_once_and_paid_once(
    broker: Broker, api: BudgetApi, home: Path, agent_name: str
) -> None:
    s, prompts = session(broker, api, home, agent_name, allow=True)
    url = f"{api.url}/pay?amount=250&key=trip-1"
    r = httpx.post(url, auth=s.httpx_auth)
    assert r.status_code == 403, r.text
    t = s.step_up(url, r.headers["www-authenticate"], amount="250", currency="EUR", payee="Air Example",
                  binding_message="Flight to Paris")  # fmt: skip
    assert [p.verification_uri for p in prompts] == [f"{broker.issuer}/stepup"]
    assert t.expires_in <= 300 and t.audience == api.url
    details = json.loads(t.authorization_details)
    assert details == [
        {"type": "payment", "amount": "250.00", "currency": "EUR", "payee": "Air Example", "scope": "payment:execute"}
    ]
    assert "250.01" in t.scope
    r = httpx.post(url, headers=s.one_time_headers(t, "POST", url))
    assert r.status_code == 200, r.text
    assert r.json() == {"remaining": "50.00"}
    # Spent: the same token for another payment is refused by the verifier.
    again = f"{api.url}/pay?amount=250&key=trip-2"
    r = httpx.post(again, headers=s.one_time_headers(t, "POST", again))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_token"
    assert r.headers["www-authenticate"].startswith('DPoP error="invalid_token"')
    # Audited end to end.
    events = broker.cli("audit", "export")
    for e in ("stepup_request", "stepup_approve", "stepup_token", "stepup_redeemed"):
        assert e in events


class BookApi:
    """POST /book?amount=A: verified locally (the token's per-call limit), nothing spent at the broker.
    With ``registered``, its verifier has the API's resource credentials."""

    def __init__(self, broker: Broker, *, registered: bool) -> None:
        from fastapi import Depends, FastAPI

        from protonpass_agent.fastapi import require_scope

        sock = free_socket()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        creds: dict[str, str] = {}
        if registered:
            rs = broker.cli_json("resource", "add", self.url)
            creds = {"client_id": rs["client_id"], "client_secret": rs["client_secret"]}
        self.verifier = pa.Verifier(broker.issuer, self.url, base_url=self.url, follow_feed=False, **creds)
        app = FastAPI()
        needs_pay = require_scope("payment:execute", verifier=self.verifier, amount="amount")

        @app.post("/book")
        async def book(amount: str, who: pa.Identity = Depends(needs_pay)) -> dict[str, str]:  # noqa: B008
            return {"booked": amount}

        self.served = Served(sock, app)

    def close(self) -> None:
        self.served.close()
        self.verifier.stop()


def one_time_token(broker: Broker, api: Any, home: Path, agent_name: str) -> tuple[pa.Session, Any, str]:
    """A session, a one-time token the owner approved for a 250 EUR booking, and its URL."""
    s, prompts = session(broker, api, home, agent_name, allow=True)
    url = f"{api.url}/book?amount=250"
    r = httpx.post(url, auth=s.httpx_auth)
    assert r.status_code == 403, r.text
    t = s.step_up(url, r.headers["www-authenticate"], amount="250", currency="EUR", payee="Air Example")
    assert len(prompts) == 1
    return s, t, url


def test_a_one_time_token_is_spent_on_first_use_at_a_verifying_api(broker: Broker, home: Path, agent_name: str) -> None:
    api = BookApi(broker, registered=True)
    try:
        s, t, url = one_time_token(broker, api, home, agent_name)
        r = httpx.post(url, headers=s.one_time_headers(t, "POST", url))
        assert r.status_code == 200 and r.json() == {"booked": "250"}, r.text
        # The same token with a fresh proof: spent.
        r = httpx.post(url, headers=s.one_time_headers(t, "POST", url))
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_token"
        assert "this one-time token was already used" in r.json()["error_description"]
        assert r.headers["www-authenticate"].startswith('DPoP error="invalid_token"')
    finally:
        api.close()


def test_a_verifier_without_credentials_refuses_one_time_tokens(broker: Broker, home: Path, agent_name: str) -> None:
    api = BookApi(broker, registered=False)
    try:
        s, t, url = one_time_token(broker, api, home, agent_name)
        r = httpx.post(url, headers=s.one_time_headers(t, "POST", url))
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_token"
        assert "resource credentials" in r.json()["error_description"]
        # The agent's own token still works there.
        r = httpx.post(f"{api.url}/book?amount=50", auth=s.httpx_auth)
        assert r.status_code == 200, r.text
    finally:
        api.close()


def test_denial_raises_access_denied(broker: Broker, api: BudgetApi, home: Path, agent_name: str) -> None:
    s, prompts = session(broker, api, home, agent_name, allow=True, decide="deny")
    url = f"{api.url}/pay?amount=250&key=trip-9"
    r = httpx.post(url, auth=s.httpx_auth)
    with pytest.raises(pa.AccessDenied) as e:
        s.step_up(url, r.headers["www-authenticate"], amount="250", currency="EUR", payee="x")
    assert e.value.code == "access_denied" and len(prompts) == 1


def test_step_up_is_off_by_default(broker: Broker, api: BudgetApi, home: Path, agent_name: str) -> None:
    s, prompts = session(broker, api, home, agent_name, allow=False)
    url = f"{api.url}/pay?amount=250&key=trip-1"
    r = httpx.post(url, auth=s.httpx_auth)
    with pytest.raises(pa.InvalidRequest):
        s.step_up(url, r.headers["www-authenticate"], payee="Air Example", amount="250", currency="EUR")
    with pytest.raises(pa.InvalidRequest):
        s.step_up(url, 'DPoP error="invalid_token"')
    assert prompts == []


def test_the_httpx_auth_steps_up_once_and_retries(broker: Broker, api: BudgetApi, home: Path, agent_name: str) -> None:
    s, prompts = session(broker, api, home, agent_name, allow=True)
    url = f"{api.url}/pay?amount=250&key=trip-h1"
    auth = s.httpx_auth.with_step_up(payee="Air Example", amount="250", currency="EUR", binding_message="Flight")
    r = httpx.post(url, auth=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"remaining": "50.00"}
    assert len(prompts) == 1
    # Within the token's own limit: no step-up, no prompt.
    r = httpx.post(f"{api.url}/pay?amount=20&key=trip-h2", auth=auth)
    assert r.status_code == 200 and len(prompts) == 1, r.text
    # Over what the day's budget has left: the owner's approval of exactly
    # this payment lets it through, once.
    r = httpx.post(f"{api.url}/pay?amount=90&key=trip-h3", auth=auth)
    assert r.status_code == 200 and r.json() == {"remaining": "0.00"}, r.text
    assert len(prompts) == 2
    # Without the step-up helper the next payment is refused as it was.
    r = httpx.post(f"{api.url}/pay?amount=10&key=trip-h4", auth=s.httpx_auth)
    assert r.status_code == 403 and "budget_exceeded" in r.headers["www-authenticate"], r.text
    assert len(prompts) == 2


def test_the_async_httpx_auth_steps_up_once(broker: Broker, api: BudgetApi, home: Path, agent_name: str) -> None:
    import asyncio

    s, prompts = session(broker, api, home, agent_name, allow=True)
    url = f"{api.url}/pay?amount=250&key=trip-a1"

    async def main() -> httpx.Response:
        async with httpx.AsyncClient() as c:
            return await c.post(url, auth=s.httpx_auth.with_step_up(payee="Air Example", amount="250", currency="EUR"))

    r = asyncio.run(main())
    assert r.status_code == 200, r.text
    assert len(prompts) == 1


def test_the_requests_auth_steps_up_once(broker: Broker, api: BudgetApi, home: Path, agent_name: str) -> None:
    import requests

    s, prompts = session(broker, api, home, agent_name, allow=True)
    url = f"{api.url}/pay?amount=250&key=trip-r1"
    r = requests.post(url, auth=s.requests_auth.with_step_up(payee="Air Example", amount="250", currency="EUR"))
    assert r.status_code == 200, r.text
    assert r.json() == {"remaining": "50.00"}
    assert len(prompts) == 1 and len(r.history) == 1 and r.history[0].status_code == 403


def test_the_helpers_do_not_step_up_unless_the_session_allows_it(
    broker: Broker, api: BudgetApi, home: Path, agent_name: str
) -> None:
    import requests

    s, prompts = session(broker, api, home, agent_name, allow=False)
    url = f"{api.url}/pay?amount=250&key=trip-n1"
    r = httpx.post(url, auth=s.httpx_auth.with_step_up(payee="Air Example", amount="250", currency="EUR"))
    assert r.status_code == 403, r.text
    r = requests.post(url, auth=s.requests_auth.with_step_up(payee="Air Example", amount="250", currency="EUR"))
    assert r.status_code == 403, r.text
    assert prompts == []
