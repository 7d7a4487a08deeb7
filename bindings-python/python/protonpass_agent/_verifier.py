"""The API side: :class:`Verifier`."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, TypedDict, Union

from . import _native
from ._native import Identity
from ._spend import Spend, _decimal_plain

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .fastapi import Amount

Headers = Union[Mapping[str, str], Iterable["tuple[str, str]"], Any]


class VerifierOptions(TypedDict, total=False):
    """The options a :class:`Verifier` passes on to the compiled verifier,
    keyword arguments of :class:`Verifier` and :meth:`Verifier.connect` (the
    default, when one is left out, after each)."""

    owner: Optional[str]  # None
    require_nonce: bool  # False
    follow_feed: bool  # True
    max_staleness: float  # 60.0 (seconds)
    client_id: Optional[str]  # None
    client_secret: Optional[str]  # None
    introspect_when_stale: bool  # False
    report_usage: bool  # False
    resource_metadata_url: Optional[str]  # None
    accept_bearer: bool  # False


def header_pairs(headers: Headers) -> list[tuple[str, str]]:
    """(name, value) pairs of any header container, repeated names kept."""
    multi = getattr(headers, "multi_items", None)
    if callable(multi):
        items: Iterable[Any] = multi()
    elif isinstance(headers, Mapping) or hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    out = []
    for k, v in items:
        if isinstance(k, bytes):
            k = k.decode("latin-1")
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        out.append((str(k), str(v)))
    return out


def _amount(amount: Union[str, Decimal]) -> str:
    # Floats are refused: 0.1 + 0.2 is not 0.3, and money must be exact.
    if isinstance(amount, Decimal):
        return _decimal_plain(amount)
    if isinstance(amount, str):
        return amount
    raise TypeError(f"amount must be a decimal string or a Decimal, not {type(amount).__name__}")


def _base(url: Optional[str]) -> Optional[str]:
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
        raise ValueError(f"base_url must be an http(s) origin with an optional path prefix, not {url!r}")
    return url.rstrip("/")


class Verifier:
    """Verifies DPoP-bound requests for one API (its audience).

    Discovers the broker at ``issuer``, caches its keys (refetched on an
    unknown ``kid``), keeps a replay cache and follows the broker's revocation
    feed. :meth:`verify` returns the caller's :class:`Identity` or raises a
    :class:`ProtonPassError` that carries ``status``, ``www_authenticate``,
    ``dpop_nonce`` and ``body`` to answer with.

    ``base_url`` is the public origin clients address the API by (and the path
    prefix a proxy strips, if any), e.g. ``"https://api.example"``: the FastAPI
    helpers check each proof's ``htu`` against it, never against the request's
    ``Host`` header, which the client chooses. They refuse to run without it.

    ``owner`` is the owner this API serves: a token that acts for anyone else
    is refused (``invalid_token``, reason ``owner``). Set it whenever more than
    one owner uses the broker.

    With ``report_usage`` (and the resource server's ``client_id`` and
    ``client_secret``), every request is reported to the broker's audit log:
    allowed ones, and refused ones with their code and finer reason, including
    ``insufficient_scope`` refusals of :meth:`Identity.require` and
    :func:`protonpass_agent.fastapi.require_scope`.

    ``resource_metadata_url`` is the URL of this API's RFC 9728 metadata
    (:func:`protonpass_agent.resource_metadata_url`): every ``401`` then
    carries ``resource_metadata="..."`` in ``WWW-Authenticate``, so that clients
    find the broker from the API (serve the document with
    :func:`protonpass_agent.fastapi.add_resource_metadata`).

    With ``accept_bearer``, ``Authorization: Bearer`` tokens without a key
    binding are accepted too: the broker issues them (for at most 10 minutes)
    to third-party clients that cannot do DPoP, for resources whose owner
    turned it on (``protonpass-broker resource bearer AUDIENCE on``). A
    DPoP-bound token sent as Bearer is still refused. Off by default.

    These options, and the others, are keyword arguments: see
    :class:`VerifierOptions` for their types and defaults.
    """

    __slots__ = ("_native", "base_url")

    def __init__(
        self, issuer: str, audience: str, *, base_url: Optional[str] = None, **options: Unpack[VerifierOptions]
    ) -> None:
        self.base_url: Optional[str] = _base(base_url)
        self._native = _native.Verifier(issuer, audience, **options)

    @classmethod
    async def connect(
        cls, issuer: str, audience: str, *, base_url: Optional[str] = None, **options: Unpack[VerifierOptions]
    ) -> Verifier:
        """Build a verifier without blocking the event loop."""
        self = cls.__new__(cls)
        self.base_url = _base(base_url)
        self._native = await _native.Verifier.connect(issuer, audience, **options)
        return self

    def verify(self, method: str, url: str, headers: Headers) -> Identity:
        """Verify one request (method, full URL as the client addressed it, headers)."""
        return self._native.verify(method, url, header_pairs(headers))

    async def verify_async(self, method: str, url: str, headers: Headers) -> Identity:
        """:meth:`verify` for asyncio."""
        return await self._native.verify_async(method, url, header_pairs(headers))

    def require_scope(self, scope: str, *, amount: Optional[Amount] = None) -> Callable[..., Any]:
        """A FastAPI dependency: see :func:`protonpass_agent.fastapi.require_scope`."""
        from .fastapi import require_scope

        return require_scope(scope, verifier=self, amount=amount)

    def spend(
        self, agent: Identity, scope: str, amount: Union[str, Decimal], *, currency: str, idempotency_key: str
    ) -> Spend:
        """Spend ``amount`` of ``currency`` from the owner's budget of ``scope``
        (``resource:action``) on ``agent``'s grant, through the broker.

        The same ``idempotency_key`` never spends twice: a retry returns the
        first answer. Returns a :class:`Spend` (``remaining`` is what is left);
        raises :class:`BudgetExceeded` (``code == "budget_exceeded"``, status
        403, ``www_authenticate`` naming the scope and amount needed) beyond the
        budget, :class:`InsufficientScope` beyond the token's per-call limit,
        :class:`InvalidToken` (401) once the grant is revoked. Needs the
        verifier's ``client_id`` and ``client_secret``.
        """
        return Spend._from_json(self._native.spend(agent, scope, _amount(amount), currency, idempotency_key))

    async def spend_async(
        self, agent: Identity, scope: str, amount: Union[str, Decimal], *, currency: str, idempotency_key: str
    ) -> Spend:
        """:meth:`spend` for asyncio."""
        text = await self._native.spend_async(agent, scope, _amount(amount), currency, idempotency_key)
        return Spend._from_json(text)

    def refund(self, agent: Identity, idempotency_key: str) -> Spend:
        """Give back the spend made under ``idempotency_key`` (refunding twice answers the same)."""
        return Spend._from_json(self._native.refund(agent, idempotency_key))

    async def refund_async(self, agent: Identity, idempotency_key: str) -> Spend:
        """:meth:`refund` for asyncio."""
        return Spend._from_json(await self._native.refund_async(agent, idempotency_key))

    def feed_status(self) -> tuple[int, bool]:
        """The last revocation-feed position seen and whether the stream is connected."""
        return self._native.feed_status()

    def stop(self) -> None:
        """Stop following the revocation feed."""
        self._native.stop()

    def __repr__(self) -> str:
        return repr(self._native)
