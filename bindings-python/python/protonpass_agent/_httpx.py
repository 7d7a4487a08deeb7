"""``httpx.Auth`` over a :class:`~protonpass_agent.Session`."""

from __future__ import annotations

import httpx

from ._dpop_flow import DpopFlow


class HttpxAuth(DpopFlow, httpx.Auth):
    __doc__ = DpopFlow.__doc__
