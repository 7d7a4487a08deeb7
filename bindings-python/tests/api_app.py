"""The small API the tests call: FastAPI routes protected by the Python verifier."""

from __future__ import annotations

import threading

from fastapi import Depends, FastAPI

from protonpass_agent import Identity, Verifier, resource_metadata_url
from protonpass_agent.fastapi import add_resource_metadata, require_scope


def make_app(issuer: str, audience: str, base_url: str) -> FastAPI:
    app = FastAPI()
    app.state.protonpass_verifier = Verifier(
        issuer, audience, base_url=base_url, resource_metadata_url=resource_metadata_url(audience)
    )
    add_resource_metadata(
        app, audience, issuer, scopes_supported=["travel:search", "travel:book", "payment:execute:under-500"]
    )
    # The same API, demanding server-provided DPoP nonces.
    nonce_verifier = Verifier(issuer, audience, base_url=base_url, require_nonce=True)
    app.state.nonce_verifier = nonce_verifier
    app.state.hits = 0
    lock = threading.Lock()

    def count() -> None:
        with lock:
            app.state.hits += 1

    def out(who: Identity) -> dict[str, object]:
        return {
            "owner": who.owner,
            "agent": who.agent,
            "scopes": who.scopes,
            "reason": who.reason,
            "token_id": who.token_id,
            "grant_id": who.grant_id,
        }

    @app.get("/whoami")
    async def whoami(who: Identity = Depends(require_scope("travel:search"))) -> dict[str, object]:
        return out(who)

    @app.get("/sync/whoami")
    def whoami_sync(who: Identity = Depends(require_scope("travel:search"))) -> dict[str, object]:
        return out(who)

    @app.post("/bookings")
    async def book(who: Identity = Depends(require_scope("travel:book"))) -> dict[str, object]:
        return {"booked": True, **out(who)}

    @app.post("/pay")
    async def pay(
        amount: str, who: Identity = Depends(require_scope("payment:execute", amount="amount"))
    ) -> dict[str, object]:
        return {"paid": amount, **out(who)}

    @app.get("/nonce/whoami")
    async def nonce_whoami(
        who: Identity = Depends(nonce_verifier.require_scope("travel:search")),
    ) -> dict[str, object]:
        return out(who)

    @app.middleware("http")
    async def counter(request, call_next):  # type: ignore[no-untyped-def]
        count()
        return await call_next(request)

    return app
