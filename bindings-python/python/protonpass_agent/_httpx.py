"""``httpx.Auth`` over a :class:`~protonpass_agent.Session`."""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncGenerator, Generator, Optional

import httpx

if TYPE_CHECKING:
    from ._session import Session


class HttpxAuth(httpx.Auth):
    """Signs each request with the session's DPoP proof and token.

    On a 401 asking for a DPoP nonce it signs again with the server's nonce
    and retries once; on an expired or revoked token it renews and retries
    once. Works with ``httpx.Client`` and ``httpx.AsyncClient``. A URL outside
    the session's audiences raises :class:`InvalidRequest` before anything is
    sent; a URL under an audience the broker serves through its gateway is
    sent to the gateway URL (:meth:`Session.route`). (With
    ``follow_redirects=True``, httpx keeps the headers on same-origin hops:
    leave it off when the audience is a path.)
    """

    def __init__(self, session: Session, reason: Optional[str] = None) -> None:
        self._session = session
        self._reason = reason

    def with_reason(self, reason: str) -> HttpxAuth:
        """The same auth, stating ``reason`` (signed into each proof)."""
        return HttpxAuth(self._session, reason)

    def _sign(self, request: httpx.Request) -> None:
        target = self._session.route(str(request.url))
        if target != str(request.url):
            # An upstream served through the broker's gateway: the request
            # goes to the gateway URL (and the Host header with it).
            request.url = httpx.URL(target)
            request.headers["Host"] = request.url.netloc.decode("ascii")
        for k, v in self._session.headers(request.method, str(request.url), reason=self._reason).items():
            request.headers[k] = v

    def _observe(self, request: httpx.Request, response: httpx.Response) -> str:
        return self._session._observe(
            str(request.url),
            response.status_code,
            response.headers.get("www-authenticate"),
            response.headers.get("dpop-nonce"),
        )

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request)
        response = yield request
        action = self._observe(request, response)
        if action == "none":
            return
        if action == "renew":
            self._session.renew()
        self._sign(request)
        response = yield request
        self._observe(request, response)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._sign(request)
        response = yield request
        action = self._observe(request, response)
        if action == "none":
            return
        if action == "renew":
            await self._session.renew_async()
        self._sign(request)
        response = yield request
        self._observe(request, response)
