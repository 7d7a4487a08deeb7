"""MCP benchmark with the Node SDK (``make bench``, after bench.py): the real
broker, MCP servers on ``@modelcontextprotocol/sdk`` behind Express
(bench_server.mjs: one plain, others protected by ``protonpass-agent/mcp``)
and the SDK's ``Client`` over ``StreamableHTTPClientTransport`` whose ``fetch``
is the session's (bench_client.mjs), all on loopback. The same rules as
bench.py's figure (a):

- first unauthenticated request -> first tool result, with a stored grant,
  discovery included: ``authenticateWithProton`` without a broker (the
  unauthenticated ``GET`` answered ``401``, the RFC 9728 metadata, the
  broker's RFC 8414 metadata, the token from the stored grant), the MCP
  ``initialize`` (with its ``notifications/initialized``) and the first
  successful ``tools/call``. Warm process, cold client: one Node process,
  its modules loaded and a warm-up run done against a pair of its own; each
  run then has a broker and a server of its own (new ports) and a store of
  its own, enrolled and warmed by a separate Node process, so that none of
  the core's process-wide caches (keyed by resource, broker or origin) nor
  its connection pool (keyed by host and port) can hit. The servers and
  brokers are warm (long-running);
- where our part goes: each run is paired with one (a new pair too) whose
  ``authenticateWithProton`` is given the broker, so skips the ``401`` and
  the RFC 9728 metadata (the difference is what discovery costs), and the
  broker's own time handling its metadata and token requests (its
  ``/metrics`` sums, before and after the run);
- per tool call: the same ``tools/call`` with DPoP auth against the plain
  server.

Figures only: no threshold is asserted. Run by ``tests/mcp/run.sh bench``."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cross"))

from bench_figures import (  # noqa: E402
    CALLS,
    COLD,
    METRICS,
    ROUNDS,
    STEPS,
    broker_requests,
    broker_seconds,
    ms,
    summary,
)
from procs import Broker, Proc  # noqa: E402


class Client:
    """bench_client.mjs, driven line by line."""

    def __init__(self) -> None:
        self.p = Proc(["node", str(HERE / "bench_client.mjs")], stdin=True, drain=False)
        self.node = str(self.p.first.get("node"))

    def ask(self, **req: Any) -> dict[str, Any]:
        out = self.p.ask(req)
        if "error" in out:
            raise RuntimeError(f"bench_client.mjs {req['op']}: {out['error']}\n{self.p.errors()}")
        return out

    def close(self) -> None:
        self.p.stop()


class Pair:
    """A broker and the Node bench server it protects, a grant for ``name``
    stored in ``store`` by another Node process (which also made one tool
    call: the server has fetched the broker's keys)."""

    def __init__(self, store: str, name: str, enroller: Client) -> None:
        self.broker = Broker()
        try:
            self.server = Proc(["node", str(HERE / "bench_server.mjs"), "--broker", self.broker.issuer])
        except BaseException:
            self.broker.close()
            raise
        self.resource = str(self.server.first["resource"])
        try:
            code = self.broker.enrollment_code(name, "bench:call", self.resource)
            enroller.ask(
                op="enroll", resource=self.resource, store=store, name=name, broker=self.broker.issuer, code=code
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.server.stop()
        self.broker.close()


def main() -> int:
    name = "mcp-bench"
    client, enroller = Client(), Client()
    try:
        print(
            f"== mcp bench, Node (@modelcontextprotocol/sdk, node {client.node}, loopback, real broker; "
            f"load average {os.getloadavg()[0]:.2f})",
            flush=True,
        )
        runs: list[list[float]] = []
        direct: list[float] = []  # authenticateWithProton with the broker given: no discovery
        handling: dict[str, list[float]] = {}
        log: list[str] = []
        at_broker: Counter[str] = Counter()
        for i in range(COLD + 1):
            for discover in (True, False):
                with tempfile.TemporaryDirectory(prefix="pp-mcp-bench-") as store:
                    pair = Pair(store, name, enroller)
                    try:
                        last = i == COLD and discover
                        before = broker_requests(pair.broker.issuer)
                        spent = broker_seconds(pair.broker.issuer)
                        out = client.ask(
                            op="cold",
                            resource=pair.resource,
                            store=store,
                            name=name,
                            **({} if discover else {"broker": pair.broker.issuer}),
                        )
                        seen = broker_requests(pair.broker.issuer) - before
                        spent = broker_seconds(pair.broker.issuer) - spent
                        if last:
                            log = out["log"]
                            at_broker = seen
                            at_broker[f"{METRICS} 200"] -= 1
                            at_broker = +at_broker
                    finally:
                        pair.close()
                if i == 0:  # run 0 is the warm-up
                    continue
                if discover:
                    runs.append(out["marks"])
                    for route in ("/.well-known/oauth-authorization-server", "/oauth/token"):
                        handling.setdefault(route, []).append(spent[route])
                else:
                    direct.append(out["marks"][0])
        print(
            summary(
                "(a) first unauthenticated request -> first tool result, stored grant, discovery included; "
                "warm process, cold client (new broker, server, store and MCP client per run)",
                runs,
                STEPS,
            )
        )
        print(f"    the MCP SDK's requests in the last run (to each response): {', '.join(log)}")
        print(
            "    the broker's requests in it (route, status: count; the revocation is the session's close, "
            "after the clock stopped): " + ", ".join(f"{k}: {n}" for k, n in sorted(at_broker.items()))
        )
        auth = statistics.median(r[0] for r in runs)
        print(
            f"    authenticateWithProton with the broker given (no 401, no RFC 9728 metadata): median "
            f"{ms(statistics.median(direct))}, so discovery costs about {ms(auth - statistics.median(direct))}; "
            "the broker's own handling time (its /metrics, medians): "
            + ", ".join(f"{route} {ms(statistics.median(v))}" for route, v in handling.items())
        )
        plain = Proc(["node", str(HERE / "bench_server.mjs")])
        try:
            with tempfile.TemporaryDirectory(prefix="pp-mcp-bench-") as store:
                pair = Pair(store, name, enroller)
                try:
                    t = client.ask(
                        op="percall",
                        plain=str(plain.first["resource"]),
                        resource=pair.resource,
                        store=store,
                        name=name,
                        broker=pair.broker.issuer,
                        rounds=ROUNDS,
                        calls=CALLS,
                    )
                finally:
                    pair.close()
        finally:
            plain.stop()
        bp, bq = min(t["plain"]), min(t["protected"])
        print(
            f"tools/call without auth: {bp * 1000:.2f} ms; with DPoP auth: {bq * 1000:.2f} ms; "
            f"overhead {(bq - bp) * 1000:.2f} ms per call (best of {ROUNDS} rounds of {CALLS}; medians "
            f"{statistics.median(t['plain']) * 1000:.2f} / {statistics.median(t['protected']) * 1000:.2f} ms)"
        )
    finally:
        client.close()
        enroller.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
