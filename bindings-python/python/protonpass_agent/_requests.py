"""``requests`` auth over a :class:`~protonpass_agent.Session`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import requests
from requests.auth import AuthBase

from ._step_up import StepUp, challenge_to_step_up

if TYPE_CHECKING:
    from ._protocols import SigningSession

_RETRIED = "_protonpass_retried"
_ORIGINAL = "_protonpass_original_url"


class RequestsAuth(AuthBase):
    """Signs each request with the session's DPoP proof and token.

    On a 401 asking for a DPoP nonce it signs again with the server's nonce
    and retries once; on an expired or revoked token it renews and retries once.
    A URL outside the session's audiences raises :class:`InvalidRequest` before
    anything is sent; redirects are followed without the credentials. A URL
    under an audience the broker serves through its gateway is sent to the
    gateway URL (:meth:`Session.route`). :meth:`with_step_up` steps up once
    on a refused call, as ``HttpxAuth.with_step_up`` does.
    """

    def __init__(self, session: SigningSession, reason: Optional[str] = None, step_up: Optional[StepUp] = None) -> None:
        self._session = session
        self._reason = reason
        self._step_up = step_up

    def with_reason(self, reason: str) -> RequestsAuth:
        """The same auth, stating ``reason`` (signed into each proof)."""
        return RequestsAuth(self._session, reason, self._step_up)

    def with_step_up(
        self,
        *,
        payee: Optional[str] = None,
        amount: Optional[str] = None,
        currency: Optional[str] = None,
        binding_message: Optional[str] = None,
    ) -> RequestsAuth:
        """The same auth, stepping up once on a ``403`` ``insufficient_scope``
        or ``budget_exceeded`` when the session allows step-up (see
        :meth:`Session.step_up`): it asks the owner, waits, and sends the call
        again once with the one-time token."""
        return RequestsAuth(self._session, self._reason, StepUp(payee, amount, currency, binding_message))

    def _sign(self, r: requests.PreparedRequest) -> None:
        # An upstream served through the broker's gateway: the request goes to
        # the gateway URL (requests connects to the URL it holds when sending).
        r.url = self._session.route(r.url or "")
        r.headers.update(self._session.headers(r.method or "GET", r.url or "", reason=self._reason))

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        setattr(r, _ORIGINAL, r.url or "")
        self._sign(r)
        r.register_hook("response", self._on_response)
        return r

    def _on_response(self, resp: requests.Response, **kwargs: Any) -> requests.Response:
        req = resp.request
        out = self._answer(resp, **kwargs)
        out = self._stepped_up(getattr(req, _ORIGINAL, req.url or ""), out, **kwargs)
        if out.is_redirect:
            # requests follows a redirect with a copy of this request, and keeps
            # its Authorization header when the host stays the same: the hop
            # goes without the session's credentials, so that the token never
            # reaches a path outside the session's audiences.
            for r in (req, out.request):
                r.headers.pop("Authorization", None)
                r.headers.pop("DPoP", None)
        return out

    def _answer(self, resp: requests.Response, **kwargs: Any) -> requests.Response:
        req = resp.request
        action = self._session._observe(
            req.url or "", resp.status_code, resp.headers.get("www-authenticate"), resp.headers.get("dpop-nonce")
        )
        if action == "none" or getattr(req, _RETRIED, False):
            return resp
        if action == "renew":
            self._session.renew()
        # Release the connection before sending again.
        _ = resp.content
        resp.close()
        prep = req.copy()
        setattr(prep, _RETRIED, True)
        self._sign(prep)
        conn = resp.connection
        retry: requests.Response = conn.send(prep, **kwargs)
        retry.history.append(resp)
        retry.request = prep
        return retry

    def _stepped_up(self, original: str, resp: requests.Response, **kwargs: Any) -> requests.Response:
        challenge = challenge_to_step_up(self._session, self._step_up, resp)
        if challenge is None or self._step_up is None:
            return resp
        req = resp.request
        token = self._session.step_up(original, challenge, **self._step_up.args())
        _ = resp.content
        resp.close()
        prep = req.copy()
        setattr(prep, _RETRIED, True)
        prep.headers.update(self._session.one_time_headers(token, prep.method or "GET", prep.url or ""))
        retry: requests.Response = resp.connection.send(prep, **kwargs)
        retry.history.append(resp)
        retry.request = prep
        return retry
