"""Renewal across short lifetimes, revocation at interpreter exit and on SIGTERM,
and the package itself (version, exports)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import protonpass_agent as pa
from conftest import ROOT, Api, Broker

CHILD = r"""
import json, os, sys, time
import protonpass_agent as pa
s = pa.authenticate_with_proton(["travel:search"], os.environ["AUD"], broker=os.environ["ISS"],
    agent_name=os.environ["AGENT"], store="memory", enrollment_code=os.environ["CODE"])
url = os.environ["AUD"] + "/whoami"
print(json.dumps([s.headers("GET", url) for _ in range(200)]), flush=True)
if sys.argv[1] == "sigterm":
    time.sleep(60)
"""


def test_renewal_across_short_lifetimes(agent_name: str, home: Path) -> None:
    b = Broker("--device-interval", "0", "--access-ttl", "2")
    try:
        from conftest import Api as A

        api = A(b)
        try:
            code = b.cli_json(
                "grant", "create", "--agent", agent_name, "--scope", "travel:search", "--audience", api.audience
            )
            with (
                pa.authenticate_with_proton(
                    ["travel:search"],
                    api.audience,
                    broker=b.issuer,
                    agent_name=agent_name,
                    store=home,
                    enrollment_code=code["enrollment_code"],
                ) as s,
                httpx.Client(base_url=api.url, auth=s.httpx_auth) as c,
            ):
                seen: list[str] = []
                deadline = time.monotonic() + 30
                while len(set(seen)) < 4 and time.monotonic() < deadline:
                    r = c.get("/whoami")
                    assert r.status_code == 200, r.text
                    seen.append(r.json()["token_id"])
                    time.sleep(0.1)
                # Four access tokens in a row, renewed in the background, no failed call.
                assert len(set(seen)) >= 4
        finally:
            api.close()
    finally:
        b.close()


@pytest.mark.parametrize("how", ["atexit", "sigterm"])
def test_process_end_revokes(how: str, broker: Broker, api: Api, agent_name: str) -> None:
    code = broker.cli_json(
        "grant", "create", "--agent", agent_name, "--scope", "travel:search", "--audience", api.audience
    )
    env = dict(os.environ, AUD=api.audience, ISS=broker.issuer, AGENT=agent_name, CODE=code["enrollment_code"])
    child = subprocess.Popen([sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE, env=env, text=True)
    assert child.stdout is not None
    spare = json.loads(child.stdout.readline())
    child.stdout.close()
    if how == "sigterm":
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == -signal.SIGTERM
    else:
        assert child.wait(30) == 0
    url = f"{api.url}/whoami"
    deadline = time.monotonic() + 15
    while True:
        r = httpx.get(url, headers=spare.pop())
        if r.status_code == 401:
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            break
        assert time.monotonic() < deadline, "the token was never revoked"
        time.sleep(0.05)


def test_version_from_the_workspace() -> None:
    cargo = (ROOT / "Cargo.toml").read_text()
    m = re.search(r'\[workspace\.package\][^\[]*?version\s*=\s*"([^"]+)"', cargo)
    assert m, "no workspace version"
    assert pa.__version__ == m.group(1)
    from importlib.metadata import version

    assert version("protonpass-agent") == m.group(1)


def test_public_api_and_typing_marker() -> None:
    for name in pa.__all__:
        assert hasattr(pa, name), name
    pkg = Path(pa.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_native.pyi").is_file()
    # One abi3 extension serves CPython 3.9 and later.
    assert Path(pa._native.__file__).name.startswith("_native.abi3.")


RENEWER = r"""
import os
import protonpass_agent as pa
with pa.authenticate_with_proton(["travel:search"], os.environ["AUD"], broker=os.environ["ISS"],
        agent_name=os.environ["AGENT"], store=os.environ["HOME_DIR"], prompt=lambda p: os._exit(3)) as s:
    for _ in range(5):
        s.renew()
print("ok", flush=True)
"""


def test_processes_sharing_a_profile_never_spend_each_others_refresh_tokens(
    broker: Broker, api: Api, agent_name: str, home: Path
) -> None:
    code = broker.cli_json(
        "grant", "create", "--agent", agent_name, "--scope", "travel:search", "--audience", api.audience
    )
    kw = dict(broker=broker.issuer, agent_name=agent_name, store=home)
    with pa.authenticate_with_proton(["travel:search"], api.audience, enrollment_code=code["enrollment_code"], **kw):
        pass
    env = dict(os.environ, AUD=api.audience, ISS=broker.issuer, AGENT=agent_name, HOME_DIR=str(home))
    children = [
        subprocess.Popen([sys.executable, "-c", RENEWER], stdout=subprocess.PIPE, env=env, text=True) for _ in range(4)
    ]
    outs = [c.communicate(timeout=60)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0, 0, 0], outs
    # Every rotation was saved before the next use: the grant is still good.
    with pa.authenticate_with_proton(["travel:search"], api.audience, **kw) as s:
        assert httpx.get(f"{api.url}/whoami", auth=s.httpx_auth).status_code == 200
