"""MCP benchmark (``make bench``): the real broker, MCP servers on the ``mcp``
SDK (one plain, others protected by ``protonpass_agent.mcp``) and the SDK's
client, all on loopback. Prints:

- first unauthenticated request -> first tool result, with a stored grant,
  discovery included: ``authenticate_with_proton`` without a broker URL (its
  unauthenticated ``GET`` of the MCP endpoint answers ``401`` naming the RFC
  9728 metadata, which names the broker; then the broker's RFC 8414 metadata
  and the token from the stored grant), the MCP ``initialize`` and the first
  successful ``tools/call``. Two figures:

  (a) warm interpreter, cold client: this process, its modules imported and
      its first-use work done by a warm-up against another broker and server.
      Each run then has a broker and a server of its own (new ports), enrolled
      and warmed by a child process, so that nothing of the client side is
      reused: the core's process-wide caches (discovered resources, broker
      metadata, DPoP nonces, shared tokens) are keyed by resource, broker or
      origin, its connection pool by host and port, and the HTTP client is
      new. Only the stored grant on disk (its own store per run) is kept, as
      the figure says. The servers and brokers are warm (long-running);
  (b) a new process per run: the wall time from spawning the interpreter to
      the first tool result, and within it the same interval as (a);
  (c) the MCP SDK alone: its two steps of (a) (``initialize``, the first
      ``tools/call``) by a new client against the plain server, with no
      authorization at all: the part of (a) that is not ours;
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
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cross"))

from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from bench_figures import CALLS, COLD, METRICS, ROUNDS, STEPS, broker_requests, summary  # noqa: E402
from procs import Broker, Proc  # noqa: E402
from protonpass_agent import Session, authenticate_with_proton_async  # noqa: E402

MCP2 = int(version("mcp").split(".")[0]) >= 2
if MCP2:
    import httpx2 as http
else:
    import httpx as http  # type: ignore[no-redef]



def auth(session: Session) -> Any:
    return session.httpx2_auth if MCP2 else session.httpx_auth


async def cold_start(resource: str, store: str, name: str, log: list[str] | None = None) -> list[float]:
    """Marks in seconds from the first request: ``authenticate_with_proton``
    done (its unauthenticated ``GET`` of the resource, answered ``401``, comes
    first), MCP initialize, the first tool call. The HTTP client is made
    before the clock starts (building its TLS context is not the protocol's
    cost). ``log`` gets each MCP request the client sent (method, status)."""
    hooks: dict[str, list[Any]] = {}
    if log is not None:
        sent: dict[int, float] = {}

        async def sending(r: Any) -> None:
            sent[id(r)] = time.perf_counter()

        async def seen(r: Any) -> None:
            took = time.perf_counter() - sent.pop(id(r.request), time.perf_counter())
            log.append(f"{r.request.method} {r.status_code} {took * 1000:.1f} ms")

        hooks = {"request": [sending], "response": [seen]}
    async with http.AsyncClient(timeout=30, event_hooks=hooks) as client:
        t0 = time.perf_counter()
        # No broker given: the core reads the resource's RFC 9728 metadata to find it.
        session = await authenticate_with_proton_async(["bench:call"], resource, store=store, agent_name=name)
        marks = [time.perf_counter()]
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


async def plain_first_call(url: str) -> list[float]:
    """Marks in seconds from the first request: MCP initialize, the first tool
    call, by a new client against the plain server, with no authorization at
    all: what the MCP SDK itself takes for the steps figure (a) ends with."""
    async with http.AsyncClient(timeout=30) as client:
        t0 = time.perf_counter()
        async with (
            streamable_http_client(url, http_client=client) as streams,
            ClientSession(streams[0], streams[1]) as mcp,
        ):
            await mcp.initialize()
            marks = [time.perf_counter()]
            result = await mcp.call_tool("echo", {"text": "hi"})
            marks.append(time.perf_counter())
            assert not getattr(result, "is_error" if MCP2 else "isError"), result
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


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PROTONPASS_BROKER_URL"}


def cold_process(resource: str, store: str, name: str) -> list[float]:
    """One cold start in a new process (``bench.py --cold``): the process's
    wall time from spawn to its first tool result, then its marks."""
    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, str(HERE / "bench.py"), "--cold", resource, store, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert p.stdout is not None
    line = p.stdout.readline()  # printed as soon as the tool answered
    wall = time.perf_counter() - t
    _, err = p.communicate()
    if p.returncode != 0 or not line:
        raise RuntimeError(f"bench.py --cold failed:\n{err[-4000:]}")
    marks: list[float] = json.loads(line)
    return [wall, *marks]


class Pair:
    """A broker and the bench server it protects, a grant for ``name`` stored
    in ``store`` by a child process, which also made one tool call (the
    server has fetched the broker's keys): warm servers, and nothing of the
    client side in this process."""

    def __init__(self, store: str, name: str) -> None:
        self.broker = Broker()
        try:
            self.server = Proc([sys.executable, str(HERE / "bench_server.py"), "--broker", self.broker.issuer])
        except BaseException:
            self.broker.close()
            raise
        self.resource = str(self.server.first["resource"])
        code = self.broker.enrollment_code(name, "bench:call", self.resource)
        out = subprocess.run(
            [sys.executable, str(HERE / "bench.py"), "--enroll", self.resource, store, name, self.broker.issuer, code],
            capture_output=True,
            text=True,
            env=child_env(),
        )
        if out.returncode != 0:
            self.close()
            raise RuntimeError(f"bench.py --enroll failed:\n{out.stderr[-4000:]}")

    def close(self) -> None:
        self.server.stop()
        self.broker.close()


async def enroll(resource: str, store: str, name: str, broker: str, code: str) -> None:
    session = await authenticate_with_proton_async(
        ["bench:call"], resource, broker=broker, store=store, agent_name=name, enrollment_code=code
    )
    try:
        async with (
            http.AsyncClient(auth=auth(session), timeout=30) as client,
            streamable_http_client(resource, http_client=client) as streams,
            ClientSession(streams[0], streams[1]) as mcp,
        ):
            await mcp.initialize()
            await mcp.call_tool("echo", {"text": "warm"})
    finally:
        session.close()


def warm_cold_clients(name: str) -> tuple[list[list[float]], list[str], Counter[str]]:
    """(a): a warm-up run against a pair of its own, then COLD runs, each
    against a new pair with a new store. The last run also says which requests
    the MCP SDK sent (with the time to each response) and which reached the
    broker."""
    runs: list[list[float]] = []
    log: list[str] = []
    at_broker: Counter[str] = Counter()
    for i in range(COLD + 1):
        with tempfile.TemporaryDirectory(prefix="pp-mcp-bench-") as store:
            pair = Pair(store, name)
            try:
                last = i == COLD
                before = broker_requests(pair.broker.issuer) if last else Counter()
                marks = asyncio.run(cold_start(pair.resource, store, name, log if last else None))
                if last:
                    at_broker = broker_requests(pair.broker.issuer) - before
                    at_broker[f"{METRICS} 200"] -= 1
                    at_broker = +at_broker
            finally:
                pair.close()
        if i > 0:  # run 0 is the warm-up
            runs.append(marks)
    return runs, log, at_broker


def main() -> int:
    if sys.argv[1:2] == ["--cold"]:
        resource, store, name = sys.argv[2:5]
        print(json.dumps(asyncio.run(cold_start(resource, store, name))), flush=True)
        return 0
    if sys.argv[1:2] == ["--enroll"]:
        asyncio.run(enroll(*sys.argv[2:7]))
        return 0
    os.environ.pop("PROTONPASS_BROKER_URL", None)
    name = "mcp-bench"
    line = f"mcp {version('mcp')} on {'httpx2' if MCP2 else 'httpx'}"
    print(f"== mcp bench ({line}, loopback, real broker; load average {os.getloadavg()[0]:.2f})", flush=True)
    warm, log, at_broker = warm_cold_clients(name)
    print(
        summary(
            "(a) first unauthenticated request -> first tool result, stored grant, discovery included; "
            "warm interpreter, cold client (new broker, server, store and HTTP client per run)",
            warm,
            STEPS,
        )
    )
    print(f"    the MCP SDK's requests in the last run (to each response): {', '.join(log)}")
    print(
        "    the broker's requests in it (route, status: count; the revocation is the session's close, "
        "after the clock stopped): "
        + ", ".join(f"{k}: {n}" for k, n in sorted(at_broker.items()))
    )
    plain = Proc([sys.executable, str(HERE / "bench_server.py")])
    try:
        with tempfile.TemporaryDirectory(prefix="pp-mcp-bench-") as store:
            pair = Pair(store, name)
            try:
                colds = [cold_process(pair.resource, store, name) for _ in range(COLD)]
                session = asyncio.run(
                    authenticate_with_proton_async(
                        ["bench:call"], pair.resource, broker=pair.broker.issuer, store=store, agent_name=name
                    )
                )
                try:
                    plain_t, prot_t = asyncio.run(per_call(str(plain.first["resource"]), pair.resource, session))
                finally:
                    session.close()
                # The first run warms the plain server, as the child process warms (a)'s.
                floor = [asyncio.run(plain_first_call(str(plain.first["resource"]))) for _ in range(COLD + 1)][1:]
            finally:
                pair.close()
    finally:
        plain.stop()
    # From the spawn: process start, imports and the HTTP client, then the marks.
    spawned = [[r[0] - r[-1] + m for m in (0.0, *r[1:])] for r in colds]
    print(
        summary(
            "(b) the same, a new process per run, from spawning the interpreter",
            spawned,
            ("process start, imports, HTTP client", *STEPS),
        )
    )
    print("    " + summary("within it, from the first request", [r[1:] for r in colds], STEPS))
    print(
        summary(
            "(c) the MCP SDK alone: the same two MCP steps by a new client against the plain server, "
            "no authorization at all (warm interpreter and server)",
            floor,
            STEPS[1:],
        )
    )
    bp, bq = min(plain_t), min(prot_t)
    print(
        f"tools/call without auth: {bp * 1000:.2f} ms; with DPoP auth: {bq * 1000:.2f} ms; "
        f"overhead {(bq - bp) * 1000:.2f} ms per call (best of {ROUNDS} rounds of {CALLS}; medians "
        f"{statistics.median(plain_t) * 1000:.2f} / {statistics.median(prot_t) * 1000:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
