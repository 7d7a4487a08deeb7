"""Cross-language end-to-end tests against the real broker: tokens obtained by
one language's SDK are accepted by the other languages' verifiers, and a
revocation from the owner's CLI reaches every running verifier."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from protonpass_agent import ProtonPassError, Session, authenticate_with_proton

from procs import Broker, NodeAgent, start_verifiers

_n = itertools.count()


@pytest.fixture(scope="module")
def running(broker: Broker) -> Iterator[dict[str, tuple[str, str]]]:
    """name -> (protected URL, audience) of each verifier."""
    procs = start_verifiers(broker.issuer)
    yield {name: (url, aud) for name, (_, url, aud) in procs.items()}
    for p, _, _ in procs.values():
        p.stop()


@pytest.fixture(scope="module")
def verifiers(running: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: url for name, (url, _) in running.items()}


@pytest.fixture(scope="module")
def audiences(running: dict[str, tuple[str, str]]) -> list[str]:
    """Each verifier has its own audience: an agent holds a token for each."""
    return [aud for _, aud in running.values()]


def name(lang: str) -> str:
    return f"cross-{lang}-{os.getpid()}-{next(_n)}"


def agent_of(lang: str, body: dict[str, Any]) -> str:
    """The agent name each verifier reports (the Python API nests it under `by`)."""
    return str(body["by"]["agent"] if lang == "python" else body["agent"])


@pytest.fixture
def py_session(broker: Broker, audiences: list[str]) -> Iterator[Session]:
    n = name("py")
    s = authenticate_with_proton(
        ["travel:search"],
        audiences[0],
        broker=broker.issuer,
        agent_name=n,
        store="memory",
        enrollment_code=broker.enrollment_code(n, "travel:search", audiences),
    )
    for aud in audiences[1:]:
        s.add_audience(aud)
    yield s
    with contextlib.suppress(ProtonPassError):  # already revoked by the test
        s.close()


@pytest.fixture
def node_agent(broker: Broker, audiences: list[str]) -> Iterator[NodeAgent]:
    n = name("node")
    a = NodeAgent(broker.issuer, audiences, n, broker.enrollment_code(n, "travel:search", audiences))
    yield a
    a.close()


def raw_get(url: str, headers: dict[str, str]) -> httpx.Response:
    """One request with exactly these headers: no renewal, no retry."""
    return httpx.get(url, headers=headers, timeout=10)


def test_python_token_accepted_by_node_and_rust(py_session: Session, verifiers: dict[str, str]) -> None:
    for lang, url in verifiers.items():
        r = httpx.get(url, auth=py_session.httpx_auth.with_reason(f"cross check with {lang}"), timeout=10)
        assert r.status_code == 200, (lang, r.status_code, r.headers.get("www-authenticate"), r.text)
        assert agent_of(lang, r.json()).startswith("cross-py-"), (lang, r.text)


def test_node_token_accepted_by_python_and_rust(node_agent: NodeAgent, verifiers: dict[str, str]) -> None:
    for lang, url in verifiers.items():
        r = node_agent.ask(op="fetch", method="GET", url=url)
        assert r.get("status") == 200, (lang, r)
        assert agent_of(lang, json.loads(r["body"])) == node_agent.name, (lang, r)


def test_node_token_refused_without_its_proof(node_agent: NodeAgent, verifiers: dict[str, str]) -> None:
    """The Node token alone (no DPoP proof from its key) is refused by every verifier."""
    for lang, url in verifiers.items():
        h = node_agent.ask(op="headers", method="GET", url=url)["headers"]
        auth = next(v for k, v in h.items() if k.lower() == "authorization")
        r = raw_get(url, {"authorization": auth})
        assert r.status_code == 401, (lang, r.status_code, r.text)


def wait_refused(url: str, make_headers: Any) -> httpx.Response:
    """Fresh headers until the verifier refuses them (the feed delivers within milliseconds; bounded at 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        r = raw_get(url, make_headers())
        if r.status_code != 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def test_cli_revocation_reaches_every_verifier(
    broker: Broker, py_session: Session, node_agent: NodeAgent, verifiers: dict[str, str]
) -> None:
    def py_headers(url: str) -> Any:
        return lambda: py_session.headers("GET", url)

    def node_headers(url: str) -> Any:
        return lambda: node_agent.ask(op="headers", method="GET", url=url)["headers"]

    py_name = authenticated_name(verifiers, py_session)
    for lang, url in verifiers.items():
        for who, h in (("python", py_headers(url)), ("node", node_headers(url))):
            r = raw_get(url, h())
            assert r.status_code == 200, (lang, who, r.status_code, r.text)

    # The owner revokes the Python agent: every verifier refuses its token; the Node agent is untouched.
    broker.cli("revoke", "--agent", py_name)
    for lang, url in verifiers.items():
        r = wait_refused(url, py_headers(url))
        assert r.status_code == 401, (lang, r.status_code, r.text)
        assert "invalid_token" in r.headers.get("www-authenticate", ""), (lang, r.headers)
        assert "revoked" in r.headers.get("www-authenticate", ""), (lang, r.headers)
        ok = raw_get(url, node_headers(url)())
        assert ok.status_code == 200, (lang, "node agent after another's revocation", ok.status_code, ok.text)

    # Then the Node agent.
    broker.cli("revoke", "--agent", node_agent.name)
    for lang, url in verifiers.items():
        r = wait_refused(url, node_headers(url))
        assert r.status_code == 401, (lang, r.status_code, r.text)
        assert "invalid_token" in r.headers.get("www-authenticate", ""), (lang, r.headers)

    # The SDKs report the revocation clearly on their next call.
    url = verifiers["rust"]
    r2 = node_agent.ask(op="fetch", method="GET", url=url)
    assert r2.get("error") == "invalid_grant" or r2.get("status") == 401, r2


def authenticated_name(verifiers: dict[str, str], s: Session) -> str:
    r = httpx.get(verifiers["node"], auth=s.httpx_auth, timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["agent"])


def test_revoking_one_token_reaches_its_verifier_and_the_sdk_renews(
    broker: Broker, py_session: Session, verifiers: dict[str, str]
) -> None:
    """`protonpass-broker revoke TOKEN_ID` (one access token, not the grant): the
    verifier of that token's audience refuses it while the agent's tokens for the
    other audiences still pass; the SDK then renews from its grant on the next call."""
    for lang in ("rust", "node"):  # the verifiers that report token ids
        url = verifiers[lang]
        r = httpx.get(url, auth=py_session.httpx_auth, timeout=10)
        assert r.status_code == 200, (lang, r.text)
        token_id = r.json()["token_id"]
        broker.cli("revoke", "--", token_id)
        refused = wait_refused(url, lambda url=url: py_session.headers("GET", url))
        assert refused.status_code == 401, (lang, refused.status_code, refused.text)
        assert "revoked" in refused.headers.get("www-authenticate", ""), (lang, refused.headers)
        for other, u in verifiers.items():
            if other != lang:
                ok = raw_get(u, py_session.headers("GET", u))
                assert ok.status_code == 200, (lang, other, ok.status_code, ok.text)
        again = httpx.get(url, auth=py_session.httpx_auth, timeout=10)
        assert again.status_code == 200, (lang, again.status_code, again.text)
        assert again.json()["token_id"] != token_id
