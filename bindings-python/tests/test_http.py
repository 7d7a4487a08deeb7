"""Calling an API protected by the Python verifier: httpx (sync and async),
requests, nonce challenges, revocation, threads."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

import httpx
import pytest
import requests

import protonpass_agent as pa
from conftest import Api, Authenticate, Broker, enroll_agent


def wait_until(cond: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


def test_httpx_sync(enroll, api: Api) -> None:
    with enroll(["travel:search", "travel:book"]) as s, httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:
        r = c.get("/whoami")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["agent"].startswith("py-agent-")
        assert sorted(body["scopes"]) == ["travel:book", "travel:search"]
        r = c.post("/bookings", json={"flight": "LX 318"})
        assert r.status_code == 200 and r.json()["booked"] is True
        # A per-request reason is signed into the proof and reaches the API.
        r = c.get("/whoami", auth=s.httpx_auth.with_reason("compare fares for the user"))
        assert r.json()["reason"] == "compare fares for the user"
        r = c.get("/sync/whoami")
        assert r.status_code == 200


def test_httpx_async(enroll, api: Api) -> None:
    s = enroll(["travel:search"])

    async def main() -> list[int]:
        async with s, httpx.AsyncClient(base_url=api.url, auth=s.httpx_auth) as c:
            rs = await asyncio.gather(*(c.get("/whoami") for _ in range(10)))
            return [r.status_code for r in rs]

    assert asyncio.run(main()) == [200] * 10


def test_requests(enroll, api: Api) -> None:
    with enroll(["travel:search", "travel:book"]) as s, requests.Session() as http:
        http.auth = s.requests_auth
        r = http.get(f"{api.url}/whoami")
        assert r.status_code == 200, r.text
        r = http.post(f"{api.url}/bookings", json={"flight": "LX 318"}, auth=s.requests_auth.with_reason("book it"))
        assert r.status_code == 200 and r.json()["reason"] == "book it"


def test_headers_by_hand(enroll, api: Api) -> None:
    with enroll(["travel:search"]) as s:
        h = s.headers("GET", f"{api.url}/whoami", reason="by hand")
        assert h["Authorization"].startswith("DPoP ")
        assert h["DPoP"].count(".") == 2
        r = httpx.get(f"{api.url}/whoami", headers=h)
        assert r.status_code == 200 and r.json()["reason"] == "by hand"
        # The same proof again is a replay.
        r = httpx.get(f"{api.url}/whoami", headers=h)
        assert r.status_code == 401
        assert 'error="invalid_dpop_proof"' in r.headers["www-authenticate"]


def test_unauthenticated_and_insufficient_scope(enroll, api: Api) -> None:
    r = httpx.get(f"{api.url}/whoami")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("DPoP algs=")
    with enroll(["travel:search"]) as s:
        r = httpx.post(f"{api.url}/bookings", auth=s.httpx_auth)
        assert r.status_code == 403
        www = r.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in www and 'scope="travel:book"' in www
        assert r.json()["error"] == "insufficient_scope"


def test_amount_limit(enroll, api: Api) -> None:
    with enroll(["payment:execute:under-100"]) as s, httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:
        assert c.post("/pay", params={"amount": "99.99"}).status_code == 200
        r = c.post("/pay", params={"amount": "100"})
        assert r.status_code == 403
        www = r.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in www
        # The challenge names the scope and the amount the call needs (for a step-up).
        assert www.endswith(', scope="payment:execute", amount="100"'), www
        assert r.json() == {"error": "insufficient_scope", "error_description": r.json()["error_description"]}


def test_nonce_challenge_answered(enroll, api: Api) -> None:
    with enroll(["travel:search"]) as s:
        before = api.app.state.hits
        with httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:
            r = c.get("/nonce/whoami")
            assert r.status_code == 200, r.text
            # One challenge (401 use_dpop_nonce), one retry with the nonce.
            assert api.app.state.hits - before == 2
            assert len(r.history) == 1 and r.history[0].status_code == 401
            assert 'error="use_dpop_nonce"' in r.history[0].headers["www-authenticate"]
            # The nonce is cached for the origin: the next request needs no retry.
            r = c.get("/nonce/whoami")
            assert r.status_code == 200 and r.history == []
        with requests.Session() as http:
            r = http.get(f"{api.url}/nonce/whoami", auth=s.requests_auth)
            assert r.status_code == 200, r.text

        async def run_async() -> int:
            async with httpx.AsyncClient(base_url=api.url, auth=s.httpx_auth) as c:
                return (await c.get("/nonce/whoami")).status_code

        assert asyncio.run(run_async()) == 200


def test_nonce_challenge_requests_on_a_new_origin(broker: Broker, agent_name: str) -> None:
    # Nonces are cached per origin for the whole process: a new API origin
    # starts without one, so the first call meets the challenge.
    other = Api(broker)
    try:
        s, _ = enroll_agent(broker, agent_name, ["travel:search"], other.audience, "memory")
        with s, requests.Session() as http:
            r = http.get(f"{other.url}/nonce/whoami", auth=s.requests_auth)
            assert r.status_code == 200, r.text
            assert len(r.history) == 1 and r.history[0].status_code == 401
            assert 'error="use_dpop_nonce"' in r.history[0].headers["www-authenticate"]
            r = http.get(f"{other.url}/nonce/whoami", auth=s.requests_auth)
            assert r.status_code == 200 and r.history == []
    finally:
        other.close()


def test_owner_revocation_seen_by_verifier(enroll, api: Api, broker: Broker) -> None:
    s = enroll(["travel:search"])
    with httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:
        r = c.get("/whoami")
        assert r.status_code == 200
        gid = r.json()["grant_id"]
        broker.revoke(gid)
        # The verifier learns it from the feed; the client's one renewal
        # attempt fails too, since the grant is gone.
        status: list[int] = []

        def rejected() -> bool:
            try:
                resp = c.get("/whoami")
            except pa.InvalidGrant:
                return True
            status.append(resp.status_code)
            return resp.status_code == 401

        wait_until(rejected, "the verifier rejects a revoked grant")
    s.close()


def test_with_exit_revokes_access_tokens(enroll, api: Api) -> None:
    with enroll(["travel:search"]) as s:
        url = f"{api.url}/whoami"
        spare = [s.headers("GET", url) for _ in range(200)]
        assert httpx.get(url, headers=spare.pop()).status_code == 200
    assert s.closed
    with pytest.raises(pa.ProtonPassError):
        s.headers("GET", url)
    last: list[httpx.Response] = []

    def rejected() -> bool:
        r = httpx.get(url, headers=spare.pop())
        last.append(r)
        return r.status_code == 401

    wait_until(rejected, "the verifier rejects the closed session's token")
    assert 'error="invalid_token"' in last[-1].headers["www-authenticate"]


def test_thread_safety_concurrent_requests(enroll, api: Api) -> None:
    with enroll(["travel:search"]) as s, httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:

        def call(_: int) -> int:
            return c.get("/whoami").status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(call, range(80)))
        assert codes == [200] * 80

        # Headers from many threads at once: each proof is distinct.
        with ThreadPoolExecutor(max_workers=8) as pool:
            proofs = list(pool.map(lambda _: s.headers("GET", f"{api.url}/whoami")["DPoP"], range(200)))
        assert len(set(proofs)) == 200


def test_renewal_and_add_audience(enroll, api: Api) -> None:
    with enroll(["travel:search"]) as s, httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:
        first = c.get("/whoami").json()["token_id"]
        s.renew()
        second = c.get("/whoami").json()["token_id"]
        assert first != second

        async def renew_async() -> None:
            await s.renew_async()

        asyncio.run(renew_async())
        assert c.get("/whoami").json()["token_id"] not in (first, second)


def test_revoked_access_token_is_renewed_transparently(enroll, api: Api, broker: Broker) -> None:
    # The owner revokes one access token (not the grant): the verifier answers
    # invalid_token, and the auth renews from the grant and retries once.
    with enroll(["travel:search"]) as s, httpx.Client(base_url=api.url, auth=s.httpx_auth) as c:
        first = c.get("/whoami").json()["token_id"]
        broker.revoke(first)
        retried: list[httpx.Response] = []

        def renewed() -> bool:
            r = c.get("/whoami")
            assert r.status_code == 200, r.text
            retried.append(r)
            return r.json()["token_id"] != first

        wait_until(renewed, "a new token after the revocation")
        assert [h.status_code for h in retried[-1].history] == [401]
        assert 'error="invalid_token"' in retried[-1].history[0].headers["www-authenticate"]


def test_gil_released_while_waiting(broker: Broker, api: Api, agent_name: str) -> None:
    # While a blocking call waits on the network (here: the device grant being
    # polled until the owner approves), other Python threads keep running.
    import threading

    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    seen_at_prompt: list[int] = []

    def prompt(p: pa.DevicePrompt) -> None:
        seen_at_prompt.append(ticks)
        broker.approve(p.user_code)

    t = threading.Thread(target=spin)
    t.start()
    try:
        with pa.authenticate_with_proton(
            ["travel:search"], api.audience, broker=broker.issuer, agent_name=agent_name, store="memory", prompt=prompt
        ):
            after = ticks
    finally:
        stop.set()
        t.join()
    # The poll waits at least one interval after the prompt: the spinning
    # thread ran meanwhile.
    assert after - seen_at_prompt[0] > 10_000


def test_verifier_connect_and_verify_async(enroll, api: Api, broker: Broker) -> None:
    url = f"{api.url}/whoami"

    async def main(s: pa.Session) -> pa.Identity:
        v = await pa.Verifier.connect(broker.issuer, api.audience)
        try:
            return await v.verify_async("GET", url, s.headers("GET", url, reason="async check"))
        finally:
            v.stop()

    with enroll(["travel:search"]) as s:
        who = asyncio.run(main(s))
        assert who.scopes == ["travel:search"] and who.reason == "async check"
        assert who.agent.startswith("py-agent-") and who.jkt == s.thumbprint


def test_async_prompt_is_refused(api: Api, broker: Broker) -> None:
    async def prompt(p: pa.DevicePrompt) -> None:
        pass

    with pytest.raises(TypeError):
        pa.authenticate_with_proton(["travel:search"], api.audience, broker=broker.issuer, prompt=prompt)


def test_second_audience(broker: Broker, api: Api, agent_name: str, authenticate: Authenticate) -> None:
    other = "https://reports.example"
    code = broker.cli_json(
        "grant",
        "create",
        "--agent",
        agent_name,
        "--scope",
        "travel:search",
        "--audience",
        api.audience,
        "--audience",
        other,
    )
    v_other = pa.Verifier(broker.issuer, other, follow_feed=False)
    try:
        with authenticate(
            ["travel:search"],
            store="memory",
            enrollment_code=code["enrollment_code"],
        ) as s:
            assert s.add_audience(other) == ["travel:search"]
            assert sorted(s.audiences) == sorted([api.audience, other])
            # Each URL gets the token of its own audience.
            who = v_other.verify("GET", f"{other}/monthly", s.headers("GET", f"{other}/monthly"))
            assert who.scopes == ["travel:search"]
            with pytest.raises(pa.InvalidToken) as e:
                v_other.verify("GET", f"{api.url}/whoami", s.headers("GET", f"{api.url}/whoami"))
            assert e.value.reason == "aud"
            assert asyncio.run(s.add_audience_async(other)) == ["travel:search"]
            assert httpx.get(f"{api.url}/whoami", auth=s.httpx_auth).status_code == 200
    finally:
        v_other.stop()


def test_the_token_goes_only_under_the_audience(enroll, api: Api) -> None:
    host_port = api.url.split("://", 1)[1]
    port = int(host_port.rsplit(":", 1)[1])
    elsewhere = [
        f"http://127.0.0.1:{port + 1}/whoami",
        f"http://localhost:{port}/whoami",
        f"https://{host_port}/whoami",
        f"http://127.0.0.1.nip.io:{port}/whoami",
        f"http://127.0.0.1.nip.io:{port}/whoami",
    ]
    with enroll(["travel:search"]) as s:
        token = s.headers("GET", f"{api.url}/whoami")["Authorization"].split(" ", 1)[1]
        before = api.app.state.hits
        for url in elsewhere:
            with pytest.raises(pa.InvalidRequest) as e:
                s.headers("GET", url, reason="why")
            assert e.value.code == "invalid_request"
            assert api.audience in str(e.value) and token not in str(e.value)
            with pytest.raises(pa.InvalidRequest), httpx.Client(auth=s.httpx_auth) as c:
                c.get(url)
            with pytest.raises(pa.InvalidRequest), requests.Session() as http:
                http.get(url, auth=s.requests_auth)

            async def run_async(url: str = url) -> None:
                async with httpx.AsyncClient(auth=s.httpx_auth) as c:
                    await c.get(url)

            with pytest.raises(pa.InvalidRequest):
                asyncio.run(run_async())
        with pytest.raises(pa.InvalidRequest):
            s.headers("GET", "/whoami")
        assert api.app.state.hits == before, "a refused request reached the API"
        with httpx.Client(auth=s.httpx_auth) as c:
            assert c.get(f"{api.url}/whoami").status_code == 200


def test_requests_follows_redirects_without_the_credentials(broker: Broker, agent_name: str) -> None:
    """requests keeps Authorization on a same-host redirect: the auth drops the
    session's headers first, so a redirect out of a path audience carries nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, Optional[str], Optional[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append((self.path, self.headers.get("authorization"), self.headers.get("dpop")))
            if self.path == "/api/go":
                self.send_response(302)
                self.send_header("location", "/admin")
            else:
                self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    audience = f"http://127.0.0.1:{server.server_address[1]}/api"
    try:
        s, _ = enroll_agent(broker, agent_name, ["travel:search"], audience, "memory")
        with s, requests.Session() as http:
            r = http.get(f"{audience}/go", auth=s.requests_auth)
            assert r.status_code == 200 and [h.status_code for h in r.history] == [302]
    finally:
        server.shutdown()
        server.server_close()
    assert [p for p, _, _ in seen] == ["/api/go", "/admin"]
    assert seen[0][1] is not None and seen[0][1].startswith("DPoP ") and seen[0][2]
    assert seen[1][1:] == (None, None), "the redirect carried the session's credentials"
