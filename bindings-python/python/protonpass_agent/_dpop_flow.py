"""The auth flow shared by the ``httpx``, ``httpx2`` and ``requests`` auths:
one sans-I/O generator (:meth:`SignedFlow._flow`), driven by each client's
way of sending (``httpx`` and ``httpx2`` share their ``Auth`` API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncGenerator, Generator, Optional, TypeVar

from ._step_up import StepUp, challenge_to_step_up

if TYPE_CHECKING:
    from ._protocols import SigningSession

_F = TypeVar("_F", bound="SignedFlow")

# What the sans-I/O flow asks its driver for (see `SignedFlow._flow`).
_SEND, _RENEW, _STEP_UP = "send", "renew", "step_up"


class SignedFlow:
    """What the HTTP auths share: the session, the reason signed into each
    proof, the step-up asked for, and the flow itself; each auth signs a
    request of its client (``_sign``) and drives the flow."""

    def __init__(self, session: SigningSession, reason: Optional[str] = None, step_up: Optional[StepUp] = None) -> None:
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

    def _flow(self, request: Any) -> Generator[tuple[str, Any], Any, None]:
        """The auth flow once, without I/O: it yields what to do next and is
        sent the outcome. ``(_SEND, request)`` is answered with the response,
        ``(_RENEW, None)`` once the tokens are renewed, ``(_STEP_UP, (url,
        challenge, details))`` with the one-time token."""
        original = str(request.url)
        self._sign(request)
        response = yield _SEND, request
        action = self._observe(request, response)
        if action != "none":
            if action == "renew":
                yield _RENEW, None
            self._sign(request)
            response = yield _SEND, request
            self._observe(request, response)
        challenge = challenge_to_step_up(self._session, self._step_up, response)
        if challenge is None or self._step_up is None:
            return
        token = yield _STEP_UP, (original, challenge, self._step_up.args())
        self._one_time(request, token)
        yield _SEND, request

    def _sign(self, request: Any) -> None:
        raise NotImplementedError

    def _blocking(self, flow: Generator[tuple[str, Any], Any, None], first: Any = None) -> Generator[Any, Any, None]:
        """Drive ``flow`` (sent ``first`` to begin) with the session's blocking
        calls: this yields only the requests to send, and is sent their
        responses. The awaitable driver (``async_auth_flow``) is its twin."""
        step = _next(flow, first)
        while step is not None:
            what, arg = step
            outcome = (yield arg) if what == _SEND else self._call(what, arg)
            step = _next(flow, outcome)

    def _call(self, what: str, arg: Any) -> Any:
        """Renew or step up (what the flow asked for) and give the outcome."""
        if what == _RENEW:
            self._session.renew()
            return None
        url, challenge, details = arg
        return self._session.step_up(url, challenge, **details)

    async def _call_async(self, what: str, arg: Any) -> Any:
        """:meth:`_call`, awaited."""
        if what == _RENEW:
            await self._session.renew_async()
            return None
        url, challenge, details = arg
        return await self._session.step_up_async(url, challenge, **details)


def _next(flow: Generator[tuple[str, Any], Any, None], outcome: Any) -> Optional[tuple[str, Any]]:
    """The flow's next request (sent ``outcome``), or None once it is done."""
    try:
        return flow.send(outcome)
    except StopIteration:
        return None


class DpopFlow(SignedFlow):
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

    def _sign(self, request: Any) -> None:
        target = self._session.route(str(request.url))
        if target != str(request.url):
            # An upstream served through the broker's gateway: the request
            # goes to the gateway URL (and the Host header with it).
            request.url = type(request.url)(target)
            request.headers["Host"] = request.url.netloc.decode("ascii")
        for k, v in self._session.headers(request.method, str(request.url), reason=self._reason).items():
            request.headers[k] = v

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        yield from self._blocking(self._flow(request))

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        flow = self._flow(request)
        step = _next(flow, None)
        while step is not None:
            what, arg = step
            outcome = (yield arg) if what == _SEND else await self._call_async(what, arg)
            step = _next(flow, outcome)
