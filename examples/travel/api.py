"""The travel API: a resource server protected by the project's Python verifier.

    GET  /travel/flights   needs travel:search
    GET  /travel/hotels    needs travel:search
    POST /travel/bookings  needs travel:book
    POST /travel/payments  needs payment:execute with a limit covering the amount
                           (``amount`` from the query string or the JSON body)
    POST /travel/charges?amount=A&key=K
                           the same, and spends A EUR of the grant's budget at the
                           broker (once per key; a one-time token is spent by it);
                           only when the API has resource-server credentials

Every request must carry ``Authorization: DPoP <token>`` and a fresh DPoP proof
from the key the token is bound to; refusals are 401/403 with the RFC 6750 /
RFC 9449 ``WWW-Authenticate`` value and an ``{"error", "error_description"}`` body.

Run: ``python api.py --issuer http://127.0.0.1:PORT [--port 0] [--audience URL]``; the first
stdout line is ``{"event":"listening","url":...,"audience":...}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
from typing import Any, Optional

from fastapi import Depends, FastAPI, Request
from protonpass_agent import Identity, Verifier
from protonpass_agent.fastapi import require_scope, spend

FLIGHTS = [
    {"flight": "TP 1234", "from": "LIS", "to": "CDG", "date": "2026-12-12", "price": 180},
    {"flight": "AF 1025", "from": "LIS", "to": "CDG", "date": "2026-12-12", "price": 240},
]
HOTELS = [
    {"hotel": "Le Petit", "city": "Paris", "nights": 3, "price_per_night": 95},
    {"hotel": "Grand Opera", "city": "Paris", "nights": 3, "price_per_night": 310},
]


async def amount_of(request: Request) -> Optional[Any]:
    """The amount of a payment: the ``amount`` query parameter, else the JSON body's ``amount``."""
    q = request.query_params.get("amount")
    if q is not None:
        return q
    try:
        body = await request.json()
    except ValueError:
        return None
    return body.get("amount") if isinstance(body, dict) else None


def who(identity: Identity) -> dict[str, Any]:
    return {"owner": identity.owner, "agent": identity.agent, "reason": identity.reason}


def make_app(issuer: str, audience: str, base_url: str, verifier: Optional[Verifier] = None) -> FastAPI:
    """``base_url``: the public URL clients address the API by (DPoP proofs are checked against it)."""
    app = FastAPI(title="travel API")
    app.state.protonpass_verifier = verifier or Verifier(issuer, audience, base_url=base_url)
    bookings = itertools.count(1)

    @app.get("/travel/flights")
    async def flights(to: str = "CDG", i: Identity = Depends(require_scope("travel:search"))) -> dict[str, Any]:
        return {"flights": [f for f in FLIGHTS if f["to"] == to.upper()], "by": who(i)}

    @app.get("/travel/hotels")
    async def hotels(city: str = "Paris", i: Identity = Depends(require_scope("travel:search"))) -> dict[str, Any]:
        return {"hotels": [h for h in HOTELS if str(h["city"]).lower() == city.lower()], "by": who(i)}

    @app.post("/travel/bookings", status_code=201)
    async def book(request: Request, i: Identity = Depends(require_scope("travel:book"))) -> dict[str, Any]:
        body = await request.json()
        return {"booking": f"BK-{next(bookings):04d}", "status": "held", "items": body, "by": who(i)}

    @app.post("/travel/payments")
    async def pay(
        request: Request, i: Identity = Depends(require_scope("payment:execute", amount=amount_of))
    ) -> dict[str, Any]:
        return {"paid": str(await amount_of(request)), "status": "captured", "by": who(i)}

    @app.post("/travel/charges")
    async def charge(
        amount: str, key: str, i: Identity = Depends(require_scope("payment:execute", amount=amount_of))
    ) -> dict[str, Any]:
        v = app.state.protonpass_verifier
        s = await spend(v, i, "payment:execute", amount, currency="EUR", idempotency_key=key)
        return {"paid": amount, "remaining": str(s.remaining), "status": "captured", "by": who(i)}

    return app


def main() -> int:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--issuer", required=True, help="the broker's issuer URL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--audience", help="this API's audience (default: its own URL + /travel)")
    p.add_argument("--client-id", help="its resource-server id (secret: TRAVEL_API_CLIENT_SECRET)")
    a = p.parse_args()
    # IPPROTO_TCP: asyncio turns Nagle off only on sockets that say TCP (the accepted
    # ones inherit it); with proto 0 a response sent as headers then body waits for
    # the client's delayed ACK, up to 40 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.host, a.port))
    url = f"http://{a.host}:{sock.getsockname()[1]}"
    audience = a.audience or f"{url}/travel"
    verifier = None
    if a.client_id:
        verifier = Verifier(
            a.issuer,
            audience,
            base_url=url,
            client_id=a.client_id,
            client_secret=os.environ.get("TRAVEL_API_CLIENT_SECRET"),
        )
    app = make_app(a.issuer, audience, url, verifier)
    print(json.dumps({"event": "listening", "url": url, "audience": audience}), flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
    finally:
        app.state.protonpass_verifier.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
