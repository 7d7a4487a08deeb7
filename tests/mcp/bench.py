"""MCP benchmark (``make bench``): the real broker, two MCP servers on the
``mcp`` SDK (one plain, one protected by ``protonpass_agent.mcp``) and the
SDK's client, all on loopback. Prints:

- cold start with a stored grant: from the first, unauthenticated MCP request
  (``401`` naming the RFC 9728 metadata) through ``authenticate_with_proton``
  without a broker URL (it reads the metadata, which names the broker, then
  gets a token from the stored grant), the MCP ``initialize`` and the first
  successful tool call. Each run is a new process, as an agent starting up is:
  nothing discovered, no connection and no token is left from an earlier run
  (the core keeps those per process). The clock starts once the process has
  imported its modules and made its HTTP client;
- per tool call: the same ``tools/call`` with DPoP auth (a proof signed per
  request, the token and proof verified per request) against the plain server.

Figures only: no threshold is asserted."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cross"))

from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from procs import Broker, Proc  # noqa: E402
from protonpass_agent import Session, authenticate_with_proton_async  # noqa: E402

MCP2 = int(version("mcp").split(".")[0]) >= 2
if MCP2:
    import httpx2 as http
else:
    import httpx as http  # type: ignore[no-redef]

ROUNDS, CALLS, COLD = 7, 50, 21


def auth(session: Session) -> Any:
    return session.httpx2_auth if MCP2 else session.httpx_auth


async def cold_start(resource: str, store: str, name: str) -> list[float]:
    """Marks in seconds from the first request: the 401, the session
    (discovery and the token), MCP initialize, the first tool call. The HTTP
    client is made before the clock starts (building its TLS context is not
    the protocol's cost)."""
    async with http.AsyncClient(timeout=30) as client:
        t0 = time.perf_counter()
        r = await client.post(resource, json={}, headers={"Accept": "application/json, text/event-stream"})
        assert r.status_code == 401 and "resource_metadata=" in r.headers["www-authenticate"], r.status_code
        marks = [time.perf_counter()]
        # No broker given: the core reads the resource's RFC 9728 metadata to find it.
        session = await authenticate_with_proton_async(["bench:call"], resource, store=store, agent_name=name)
        marks.append(time.perf_counter())
        try:
            client.auth = auth(session)
            async with (
                streamable_http_client(resource, http_client=client) as streams,
                ClientSession(streams[0], streams[1]) as mcp,
            ):
                await mcp.initialize()
                marks.append(time.perf_counter())
                result = await mcp.call_tool("echo", {"text": "hi"})
                marks.append(time.perf_counter())
                assert not getattr(result, "is_error" if MCP2 else "isError"), result
        finally:
            session.close()
    return [m - t0 for m in marks]


async def per_call(plain_url: str, protected_url: str, session: Session) -> tuple[list[float], list[float]]:
    async with (
        http.AsyncClient(timeout=30) as c1,
        streamable_http_client(plain_url, http_client=c1) as s1,
        ClientSession(s1[0], s1[1]) as plain,
        http.AsyncClient(auth=auth(session), timeout=30) as c2,
        streamable_http_client(protected_url, http_client=c2) as s2,
        ClientSession(s2[0], s2[1]) as protected,
    ):
        await plain.initialize()
        await protected.initialize()
        for mcp in (plain, protected):
            for _ in range(20):
                await mcp.call_tool("echo", {"text": "warm"})
        out: tuple[list[float], list[float]] = ([], [])
        for _ in range(ROUNDS):
            for i, mcp in enumerate((plain, protected)):
                t = time.perf_counter()
                for _ in range(CALLS):
                    await mcp.call_tool("echo", {"text": "x"})
                out[i].append((time.perf_counter() - t) / CALLS)
        return out


def cold_process(resource: str, store: str, name: str) -> list[float]:
    """One cold start in a new process (``bench.py --cold``)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "bench.py"), "--cold", resource, store, name],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PROTONPASS_BROKER_URL"},
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.py --cold failed:\n{out.stderr[-4000:]}")
    marks: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return marks


def main() -> int:
    if sys.argv[1:2] == ["--cold"]:
        resource, store, name = sys.argv[2:5]
        print(json.dumps(asyncio.run(cold_start(resource, store, name))))
        return 0
    os.environ.pop("PROTONPASS_BROKER_URL", None)
    broker = Broker()
    servers: list[Proc] = []
    try:
        plain = Proc([sys.executable, str(HERE / "bench_server.py")])
        servers.append(plain)
        prot = Proc([sys.executable, str(HERE / "bench_server.py"), "--broker", broker.issuer])
        servers.append(prot)
        resource = str(prot.first["resource"])
        name = "mcp-bench"
        g = json.loads(
            broker.cli("grant", "create", "--agent", name, "--scope", "bench:call", "--audience", resource, "--json")
        )
        with tempfile.TemporaryDirectory(prefix="pp-mcp-bench-") as store:
            first = asyncio.run(
                authenticate_with_proton_async(
                    ["bench:call"],
                    resource,
                    broker=broker.issuer,
                    store=store,
                    agent_name=name,
                    enrollment_code=g["enrollment_code"],
                )
            )
            first.close()  # the grant stays stored
            colds = [cold_process(resource, store, name) for _ in range(COLD)]
            session = asyncio.run(
                authenticate_with_proton_async(
                    ["bench:call"], resource, broker=broker.issuer, store=store, agent_name=name
                )
            )
            try:
                plain_t, prot_t = asyncio.run(per_call(str(plain.first["resource"]), resource, session))
            finally:
                session.close()
        line = f"mcp {version('mcp')} on {'httpx2' if MCP2 else 'httpx'}"
        ms = 1000.0
        print(f"== mcp bench ({line}, loopback, real broker)")
        total = sorted(c[-1] for c in colds)
        # Each step's median on its own (the medians of the steps need not add up to the total's).
        steps = [statistics.median(c[i] - (c[i - 1] if i else 0.0) for c in colds) for i in range(4)]
        print(
            "first unauthenticated request -> first tool call, stored grant, new process per run: "
            f"median {statistics.median(total) * ms:.1f} ms, best {total[0] * ms:.1f} ms ({COLD} runs); "
            f"steps (medians): the 401 {steps[0] * ms:.1f} ms, discovery (RFC 9728 metadata) and the token "
            f"from the stored grant {steps[1] * ms:.1f} ms, MCP initialize {steps[2] * ms:.1f} ms, "
            f"the first tools/call {steps[3] * ms:.1f} ms"
        )
        bp, bq = min(plain_t), min(prot_t)
        print(
            f"tools/call without auth: {bp * ms:.2f} ms; with DPoP auth: {bq * ms:.2f} ms; "
            f"overhead {(bq - bp) * ms:.2f} ms per call (best of {ROUNDS} rounds of {CALLS}; medians "
            f"{statistics.median(plain_t) * ms:.2f} / {statistics.median(prot_t) * ms:.2f} ms)"
        )
    finally:
        for p in servers:
            p.stop()
        broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
