"""A Python agent waiting for a step-up: denial, revocation of the grant while
waiting, and the end of the request's lifetime each end ``session.step_up``
with its typed error; without a prompt callback the default one prints one
line on stderr."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

import protonpass_agent as pa
from conftest import enroll_agent
from kit import Broker

AUD = "https://wait.example"
URL = f"{AUD}/pay"
CHALLENGE = 'DPoP error="insufficient_scope", scope="payment:execute"'


@pytest.fixture(scope="module")
def short_broker() -> Iterator[Broker]:
    """A broker whose step-up requests wait 2 seconds unless the agent asks otherwise."""
    b = Broker("--device-interval", "0", "--stepup-ttl", "2")
    yield b
    b.close()


def waiting_session(
    broker: Broker, home: Path, agent_name: str, owner: Callable[[str], None] | None
) -> tuple[pa.Session, list[pa.DevicePrompt]]:
    """A session allowed to step up; its prompt (unless ``owner`` is None: the
    default prompt) runs ``owner(grant_id)`` on a thread, as the owner acting
    elsewhere would."""
    prompts: list[pa.DevicePrompt] = []
    gid: list[str] = []

    def prompt(p: pa.DevicePrompt) -> None:
        prompts.append(p)
        assert owner is not None
        threading.Thread(target=owner, args=(gid[0],)).start()

    options = {"prompt": prompt} if owner is not None else {}
    s, grant = enroll_agent(broker, agent_name, ["payment:execute:under-100"], AUD, home, allow_step_up=True, **options)
    gid.append(grant["grant_id"])
    return s, prompts


def ask(s: pa.Session) -> pa.OneTimeToken:
    return s.step_up(URL, CHALLENGE, amount="250", currency="EUR", payee="Air Example", binding_message="Flight")


def test_denial_ends_the_wait_with_access_denied(broker: Broker, home: Path, agent_name: str) -> None:
    def deny(_gid: str) -> None:
        waiting = [w for w in broker.cli_json("stepup", "list") if w["agent"] == agent_name]
        broker.cli_json("stepup", "deny", waiting[0]["id"])

    s, prompts = waiting_session(broker, home, agent_name, deny)
    with pytest.raises(pa.AccessDenied) as e:
        ask(s)
    assert e.value.code == "access_denied"
    assert [(p.verification_uri, p.user_code) for p in prompts] == [(f"{broker.issuer}/stepup", "")]


def test_revoking_the_grant_while_waiting_ends_it_with_invalid_grant(
    broker: Broker, home: Path, agent_name: str
) -> None:
    s, prompts = waiting_session(broker, home, agent_name, lambda gid: broker.cli("revoke", gid))
    with pytest.raises(pa.InvalidGrant) as e:
        ask(s)
    assert e.value.code == "invalid_grant" and len(prompts) == 1


def test_the_end_of_the_requests_lifetime_ends_it_with_expired_token(
    short_broker: Broker, home: Path, agent_name: str
) -> None:
    s, prompts = waiting_session(short_broker, home, agent_name, lambda _gid: None)
    start = time.monotonic()
    with pytest.raises(pa.Expired) as e:
        ask(s)
    assert e.value.code == "expired_token"
    assert time.monotonic() - start < 20
    assert [p.expires_in for p in prompts] == [2]


def test_the_default_prompt_prints_one_line_on_stderr(
    short_broker: Broker, home: Path, agent_name: str, capfd: pytest.CaptureFixture[str]
) -> None:
    s, _ = waiting_session(short_broker, home, agent_name, None)
    capfd.readouterr()
    with pytest.raises(pa.Expired):
        ask(s)
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        f"This call needs the owner's approval: approve it at {short_broker.issuer}/stepup (valid 1 min). "
        "Waiting for approval..."
    ], err
    assert "ar_" not in err and out == ""
