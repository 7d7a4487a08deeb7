"""``requests`` auth over a :class:`~protonpass_agent.Session`."""

from __future__ import annotations

from typing import Any, Generator

import requests
from requests.auth import AuthBase

from ._dpop_flow import SignedFlow

# Where a prepared request keeps its flow, from signing to its response.
_FLOW = "_protonpass_flow"


class RequestsAuth(SignedFlow, AuthBase):
    """Signs each request with the session's DPoP proof and token.

    On a 401 asking for a DPoP nonce it signs again with the server's nonce
    and retries once; on an expired or revoked token it renews and retries once.
    A URL outside the session's audiences raises :class:`InvalidRequest` before
    anything is sent; redirects are followed without the credentials. A URL
    under an audience the broker serves through its gateway is sent to the
    gateway URL (:meth:`Session.route`). :meth:`with_step_up` steps up once
    on a refused call, as ``HttpxAuth.with_step_up`` does.
    """

    def _sign(self, r: requests.PreparedRequest) -> None:
        # An upstream served through the broker's gateway: the request goes to
        # the gateway URL (requests connects to the URL it holds when sending).
        r.url = self._session.route(r.url or "")
        r.headers.update(self._session.headers(r.method or "GET", r.url or "", reason=self._reason))

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        flow = self._flow(r)
        next(flow)  # signs r, to be sent as it is
        setattr(r, _FLOW, flow)
        r.register_hook("response", self._on_response)
        return r

    def _on_response(self, resp: requests.Response, **kwargs: Any) -> requests.Response:
        req = resp.request
        # A redirect hop is a copy without the flow: it goes as it is.
        flow = req.__dict__.pop(_FLOW, None)
        out = resp if flow is None else self._drive(flow, resp, **kwargs)
        if out.is_redirect:
            # requests follows a redirect with a copy of this request, and keeps
            # its Authorization header when the host stays the same: the hop
            # goes without the session's credentials, so that the token never
            # reaches a path outside the session's audiences.
            for r in (req, out.request):
                r.headers.pop("Authorization", None)
                r.headers.pop("DPoP", None)
        return out

    def _drive(
        self, flow: Generator[tuple[str, Any], Any, None], resp: requests.Response, **kwargs: Any
    ) -> requests.Response:
        """Run the rest of the flow from the first response: a retry goes out
        on the same connection, with the earlier response in its history."""
        steps = self._blocking(flow, resp)
        try:
            prep = next(steps)
            while True:
                # Release the connection before sending again.
                _ = resp.content
                resp.close()
                prep = prep.copy()
                retry: requests.Response = resp.connection.send(prep, **kwargs)
                retry.history.append(resp)
                retry.request = prep
                resp = retry
                prep = steps.send(retry)
        except StopIteration:
            return resp
