"""What the MCP benchmarks (bench.py with the Python SDKs, bench_node.py with
the Node SDK) share: the sizes of a run, the steps of figure (a), the broker's
own counts from its ``/metrics`` (which it serves to loopback clients), and
how the figures are printed. Standard library only: bench_node.py needs no SDK."""

from __future__ import annotations

import re
import statistics
import urllib.request
from collections import Counter

ROUNDS, CALLS, COLD = 7, 50, 21
METRICS = "/metrics"
STEPS = ("authenticate (401, RFC 9728 and RFC 8414 metadata, token)", "MCP initialize", "the first tools/call")


def _metrics(issuer: str) -> str:
    with urllib.request.urlopen(f"{issuer}{METRICS}", timeout=10) as r:
        return str(r.read().decode())


def broker_requests(issuer: str) -> Counter[str]:
    """The broker's request counts by route and status (its ``/metrics``)."""
    out: Counter[str] = Counter()
    for m in re.finditer(
        r'^protonpass_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\d+)$', _metrics(issuer), re.M
    ):
        out[f"{m[1]} {m[2]}"] = int(m[3])
    return out


def broker_seconds(issuer: str) -> Counter[str]:
    """The broker's time handling requests, by route (its ``/metrics`` sums)."""
    out: Counter[str] = Counter()
    for m in re.finditer(
        r'^protonpass_http_request_duration_seconds_sum\{route="([^"]*)"\} (\S+)$', _metrics(issuer), re.M
    ):
        out[m[1]] = float(m[2])
    return out


def ms(x: float) -> str:
    return f"{x * 1000.0:.1f} ms"


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[-1]


def summary(label: str, runs: list[list[float]], steps: tuple[str, ...]) -> str:
    """The total's median, p90 and best over ``runs`` (each the times at which
    its ``steps`` ended), and each step's median."""
    total = [r[len(steps) - 1] for r in runs]
    # Each step's median on its own (the medians of the steps need not add up to the total's).
    parts = [
        f"{s} {ms(statistics.median(r[i] - (r[i - 1] if i else 0.0) for r in runs))}" for i, s in enumerate(steps)
    ]
    return (
        f"{label}: median {ms(statistics.median(total))}, p90 {ms(p90(total))}, best {ms(min(total))} "
        f"({len(runs)} runs); steps (medians): {', '.join(parts)}"
    )
