"""The auth flow shared by the ``httpx`` and ``httpx2`` auths (their ``Auth`` APIs are the same)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncGenerator, Generator, Optional, TypeVar

if TYPE_CHECKING:
    from ._session import Session

_F = TypeVar("_F", bound="DpopFlow")


class DpopFlow:
    """Signs each request with the session's DPoP proof and token.

    On a 401 asking for a DPoP nonce it signs again with the server's nonce
    and retries once; on an expired or revoked token it renews and retries
    once. Works with sync and async clients. A URL outside the session's
    audiences raises :class:`InvalidRequest` before anything is sent; a URL
    under an audience the broker serves through its gateway is sent to the
    gateway URL (:meth:`Session.route`). (With
    ``follow_redirects=True``, the client keeps the headers on same-origin
    hops: leave it off when the audience is a path.)
    """

    def __init__(self, session: Session, reason: Optional[str] = None) -> None:
        self._session = session
        self._reason = reason

    def with_reason(self: _F, reason: str) -> _F:
        """The same auth, stating ``reason`` (signed into each proof)."""
        return type(self)(self._session, reason)

    def _sign(self, request: Any) -> None:
        target = self._session.route(str(request.url))
        if target != str(request.url):
            # An upstream served through the broker's gateway: the request
            # goes to the gateway URL (and the Host header with it).
            request.url = type(request.url)(target)
            request.headers["Host"] = request.url.netloc.decode("ascii")
        for k, v in self._session.headers(request.method, str(request.url), reason=self._reason).items():
            request.headers[k] = v

    def _observe(self, request: Any, response: Any) -> str:
        return self._session._observe(
            str(request.url),
            response.status_code,
            response.headers.get("www-authenticate"),
            response.headers.get("dpop-nonce"),
        )

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
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

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
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
