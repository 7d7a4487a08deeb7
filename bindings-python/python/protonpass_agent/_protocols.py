"""The shapes the optional adapters rely on, as protocols.

The HTTP auths (``_httpx``, ``_httpx2``, ``_requests``) and the FastAPI
adapter take a session or a verifier by what it can do, not by its class:
``Session.httpx_auth()`` and ``Verifier.require_scope()`` import their adapter,
so an adapter importing ``_session`` or ``_verifier`` back would close an
import cycle.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Optional, Protocol, TypedDict, Union

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._native import Identity, OneTimeToken
    from ._spend import Spend


class StepUpDetails(TypedDict, total=False):
    """What a step-up names beyond the URL and its challenge: the keyword
    arguments of :meth:`~protonpass_agent.Session.step_up` (and of its
    awaitable twin), which the HTTP auths pass on."""

    amount: Optional[str]
    currency: Optional[str]
    payee: Optional[str]
    binding_message: Optional[str]


class SigningSession(Protocol):
    """What the HTTP auths use of a :class:`~protonpass_agent.Session`."""

    @property
    def allows_step_up(self) -> bool: ...

    def route(self, url: str) -> str: ...

    def headers(self, method: str, url: str, *, reason: Optional[str] = None) -> dict[str, str]: ...

    def one_time_headers(self, token: OneTimeToken, method: str, url: str) -> dict[str, str]: ...

    def renew(self) -> None: ...

    async def renew_async(self) -> None: ...

    def step_up(self, url: str, www_authenticate: str, **details: Unpack[StepUpDetails]) -> OneTimeToken: ...

    async def step_up_async(
        self, url: str, www_authenticate: str, **details: Unpack[StepUpDetails]
    ) -> OneTimeToken: ...

    def _observe(self, url: str, status: int, www_authenticate: Optional[str], nonce: Optional[str]) -> str: ...


class RequestVerifier(Protocol):
    """What the FastAPI adapter uses of a :class:`~protonpass_agent.Verifier`."""

    base_url: Optional[str]

    async def verify_async(self, method: str, url: str, headers: Any) -> Identity: ...

    async def spend_async(
        self, agent: Identity, scope: str, amount: Union[str, Decimal], *, currency: str, idempotency_key: str
    ) -> Spend: ...
