"""The auth flow shared by the ``httpx`` and ``httpx2`` auths (their ``Auth`` APIs are the same)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncGenerator, Generator, Optional, TypeVar

from ._step_up import StepUp, challenge_to_step_up

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

    :meth:`with_step_up` gives an auth that, when the API answers ``403``
    with ``insufficient_scope`` or ``budget_exceeded`` and the session allows
    step-up, asks the owner for exactly that call and retries it once with
    the one-time token.
    """

    def __init__(self, session: Session, reason: Optional[str] = None, step_up: Optional[StepUp] = None) -> None:
        self._session = session
        self._reason = reason
        self._step_up = step_up

    def with_reason(self: _F, reason: str) -> _F:
        """The same auth, stating ``reason`` (signed into each proof)."""
        return type(self)(self._session, reason, self._step_up)

    def with_step_up(
        self: _F,
        *,
        payee: Optional[str] = None,
        amount: Optional[str] = None,
        currency: Optional[str] = None,
        binding_message: Optional[str] = None,
    ) -> _F:
        """The same auth, stepping up once on a refused call (see :meth:`Session.step_up`).

        On a ``403`` ``insufficient_scope`` or ``budget_exceeded`` challenge,
        and only when the session was opened with ``allow_step_up=True``, it
        asks the owner (the session's prompt is told once), waits, and sends
        the call again once with the one-time token; the answer to that retry
        is the response. A denial or expiry raises as :meth:`Session.step_up`
        does. For a payment, name the ``payee`` (and ``amount`` and
        ``currency`` when the challenge does not).
        """
        return type(self)(self._session, self._reason, StepUp(payee, amount, currency, binding_message))

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

    def _one_time(self, request: Any, token: Any) -> None:
        for k, v in self._session.one_time_headers(token, request.method, str(request.url)).items():
            request.headers[k] = v

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        original = str(request.url)
        self._sign(request)
        response = yield request
        action = self._observe(request, response)
        if action != "none":
            if action == "renew":
                self._session.renew()
            self._sign(request)
            response = yield request
            self._observe(request, response)
        challenge = challenge_to_step_up(self._session, self._step_up, response)
        if challenge is None or self._step_up is None:
            return
        token = self._session.step_up(original, challenge, **self._step_up.args())
        self._one_time(request, token)
        yield request

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        original = str(request.url)
        self._sign(request)
        response = yield request
        action = self._observe(request, response)
        if action != "none":
            if action == "renew":
                await self._session.renew_async()
            self._sign(request)
            response = yield request
            self._observe(request, response)
        challenge = challenge_to_step_up(self._session, self._step_up, response)
        if challenge is None or self._step_up is None:
            return
        token = await self._session.step_up_async(original, challenge, **self._step_up.args())
        self._one_time(request, token)
        yield request
