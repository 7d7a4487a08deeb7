"""``httpx2.Auth`` over a :class:`~protonpass_agent.Session` (``mcp`` 2.x builds its transport on httpx2)."""

from __future__ import annotations

import httpx2

from ._dpop_flow import DpopFlow


class Httpx2Auth(DpopFlow, httpx2.Auth):
    __doc__ = DpopFlow.__doc__
