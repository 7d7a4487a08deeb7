"""FastAPI / Starlette integration: ``Depends(require_scope("travel:book"))``."""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Awaitable, Callable, Optional, Union

try:
    from starlette.exceptions import HTTPException as _StarletteHTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "protonpass_agent.fastapi needs FastAPI or Starlette: pip install 'protonpass-agent[fastapi]'"
    ) from e

try:
    from fastapi import HTTPException
except ImportError:  # pragma: no cover - Starlette alone
    HTTPException = _StarletteHTTPException  # type: ignore[misc,assignment]

from ._metadata import resource_metadata, resource_metadata_path
from ._native import Identity, ProtonPassError
from ._protocols import RequestVerifier
from ._spend import Spend, _decimal_plain

#: Where a request's amount comes from: a query or path parameter name (a
#: ``str``), a constant (``int`` or :class:`decimal.Decimal`), or a function of
#: the request (sync or async) returning a decimal string, an ``int`` or a
#: :class:`decimal.Decimal`. Never a ``float``: money must be exact.
Amount = Union[str, int, Decimal, Callable[[Request], Union[Any, Awaitable[Any]]]]

STATE_KEY = "protonpass_verifier"


class Refusal(HTTPException):
    """A refused request: ``status_code``, ``headers`` (``WWW-Authenticate``,
    ``DPoP-Nonce``) and ``body``, the RFC 6749 error object
    ``{"error", "error_description"}`` that :func:`refusal_handler` sends as
    the whole JSON body. An ``HTTPException``, so code that catches those
    still does; ``detail`` is the same object."""

    def __init__(self, status_code: int, code: str, description: str, headers: Optional[dict[str, str]] = None):
        self.body = {"error": code, "error_description": description}
        super().__init__(status_code=status_code, detail=self.body, headers=headers)


async def refusal_handler(request: Request, exc: Exception) -> Response:
    """The answer to a :class:`Refusal`: its status and headers, and the RFC
    6749 body at the top level (never under ``detail``)."""
    if not isinstance(exc, Refusal):  # pragma: no cover - registered for Refusal only
        raise exc
    headers = dict(exc.headers or {})
    headers["Cache-Control"] = "no-store"
    return JSONResponse(exc.body, status_code=exc.status_code, headers=headers)


def add_error_handler(app: Any) -> None:
    """Answer the helpers' refusals with the RFC 6749 body at the top level.
    :func:`require_scope` does this on its first use in an app; call it at
    start-up for an app that raises :func:`http_error` or calls :func:`spend`
    without :func:`require_scope`."""
    app.add_exception_handler(Refusal, refusal_handler)


def _handle_refusals(request: Request) -> None:
    # Starlette looks handlers up, at the time of the exception, in the
    # table its exception middleware puts in the request's scope: adding ours
    # there once covers this app's later refusals too (`spend` included).
    table = request.scope.get("starlette.exception_handlers")
    if isinstance(table, tuple) and table and isinstance(table[0], dict):
        table[0].setdefault(Refusal, refusal_handler)


def http_error(e: ProtonPassError) -> Refusal:
    """The HTTP answer to a refused request: status, ``WWW-Authenticate``, ``DPoP-Nonce``, RFC 6749 body."""
    status = getattr(e, "status", None) or 401
    headers = {}
    www = getattr(e, "www_authenticate", None)
    if www:
        headers["WWW-Authenticate"] = www
    nonce = getattr(e, "dpop_nonce", None)
    if nonce:
        headers["DPoP-Nonce"] = nonce
    return Refusal(status, e.code or "server_error", str(e), headers or None)


_NO_BASE = (
    "the Verifier has no base_url: pass Verifier(..., base_url='https://api.example'), "
    "the public URL clients address this API by (DPoP proofs are checked against it)"
)


def public_url(verifier: RequestVerifier, request: Request) -> str:
    """The URL the client must have signed: the verifier's ``base_url``, then the request's path and query."""
    if verifier.base_url is None:
        raise RuntimeError(_NO_BASE)
    u = request.url
    return f"{verifier.base_url}{u.path}" + (f"?{u.query}" if u.query else "")


def _decimal_text(value: Any, where: str) -> str:
    """``value`` as the decimal string the core reads: a ``str`` as given, an
    ``int`` or a finite :class:`~decimal.Decimal` exactly; a ``float`` (or
    anything else) is the API author's mistake, a ``TypeError``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return _decimal_plain(value, f"{where}: the amount")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise TypeError(
            f"{where}: the amount is a float ({value!r}), which cannot hold money exactly: "
            "pass a decimal string ('12.50'), an int or a decimal.Decimal"
        )
    raise TypeError(
        f"{where}: the amount must be a decimal string, an int or a decimal.Decimal, not {type(value).__name__}"
    )


async def _amount_of(request: Request, amount: Amount) -> str:
    if isinstance(amount, str):
        value: Any = request.query_params.get(amount) or request.path_params.get(amount)
    elif isinstance(amount, (int, Decimal)):
        value = amount
    else:
        value = amount(request)
        if inspect.isawaitable(value):
            value = await value
        if value is not None:
            try:
                return _decimal_text(value, "require_scope(amount=...)'s function")
            except ValueError as e:
                # A Decimal read from the request, infinite or too long: the
                # request's fault, not the API's.
                raise Refusal(400, "invalid_request", str(e)) from None
    if value is None:
        raise Refusal(400, "invalid_request", "the request names no amount")
    return _decimal_text(value, "require_scope(amount=...)")


def require_scope(
    scope: str, *, verifier: Optional[RequestVerifier] = None, amount: Optional[Amount] = None
) -> Callable[[Request], Awaitable[Identity]]:
    """A dependency that verifies the request and requires ``scope``.

    Returns the caller's :class:`Identity`; answers 401 (bad or missing token
    or proof, with ``WWW-Authenticate``) or 403 (``insufficient_scope``), with
    the RFC 6749 body ``{"error", "error_description"}`` at the top level
    (:class:`Refusal`). With ``amount`` (a parameter's name, a constant, or a
    function of the request: decimal strings, ``int`` or ``Decimal``, never
    ``float``), ``scope`` is a ``resource:action`` and the token must allow
    that amount (``payment:execute:under-100`` allows 99.99); the 403 names
    the ``scope`` and ``amount`` in ``WWW-Authenticate``. A constant ``float``
    is a ``TypeError`` here; a function's ``float`` a ``TypeError`` on the
    request. Without ``verifier``,
    ``app.state.protonpass_verifier`` is used. The identity's ``owner`` is the
    owner the agent acts for.

    The proof's ``htu`` is checked against the verifier's ``base_url`` plus the
    request's path and query, never against the ``Host`` header; a verifier
    without ``base_url`` is a configuration error (``RuntimeError``). A refusal
    for a missing scope is reported to the broker like the verifier's own
    refusals when the verifier reports usage.
    """
    if verifier is not None and verifier.base_url is None:
        raise RuntimeError(_NO_BASE)
    if amount is not None and not isinstance(amount, str) and not callable(amount):
        # A constant: checked now, at decoration time (a float is refused).
        _decimal_text(amount, "require_scope(amount=...)")

    async def dependency(request: Request) -> Identity:
        _handle_refusals(request)
        v = verifier if verifier is not None else getattr(request.app.state, STATE_KEY, None)
        if v is None:
            raise RuntimeError(f"no Verifier: pass verifier= or set app.state.{STATE_KEY}")
        try:
            identity = await v.verify_async(request.method, public_url(v, request), request.headers.raw)
            if amount is None:
                identity.require(scope)
            else:
                identity.require_amount(scope, await _amount_of(request, amount))
        except ProtonPassError as e:
            raise http_error(e) from None
        return identity

    return dependency


async def spend(
    verifier: RequestVerifier,
    agent: Identity,
    scope: str,
    amount: Union[str, Decimal],
    *,
    currency: str,
    idempotency_key: str,
) -> Spend:
    """:meth:`Verifier.spend_async`, with a refusal raised as the HTTP answer
    (:class:`Refusal`, RFC 6749 body): ``403 budget_exceeded`` (or
    ``insufficient_scope``) with its ``WWW-Authenticate`` naming the scope,
    amount and currency, 401 once the grant is revoked."""
    try:
        return await verifier.spend_async(agent, scope, amount, currency=currency, idempotency_key=idempotency_key)
    except ProtonPassError as e:
        raise http_error(e) from None


def resource_metadata_endpoint(
    resource: str,
    authorization_server: str,
    *,
    scopes_supported: Sequence[str] = (),
    resource_documentation: Optional[str] = None,
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint answering with ``resource``'s RFC 9728 metadata
    (built once, by the core). Route it at
    :func:`protonpass_agent.resource_metadata_path` of the resource, in any
    Starlette or FastAPI app."""
    body = json.dumps(
        resource_metadata(
            resource,
            authorization_server,
            scopes_supported=scopes_supported,
            resource_documentation=resource_documentation,
        )
    ).encode()

    async def endpoint(request: Request) -> Response:
        return Response(body, media_type="application/json", headers={"Cache-Control": "max-age=300"})

    return endpoint


def add_resource_metadata(
    app: Any,
    resource: str,
    authorization_server: str,
    *,
    scopes_supported: Sequence[str] = (),
    resource_documentation: Optional[str] = None,
) -> str:
    """Serve ``resource``'s RFC 9728 metadata from ``app`` (FastAPI or Starlette)
    at its path-suffixed well-known path and at the root one, for clients that
    try only the root. Returns the path-suffixed path. Pair it with
    ``Verifier(..., resource_metadata_url=resource_metadata_url(resource))`` so
    that ``401`` answers point at the document."""
    endpoint = resource_metadata_endpoint(
        resource,
        authorization_server,
        scopes_supported=scopes_supported,
        resource_documentation=resource_documentation,
    )
    path = resource_metadata_path(resource)
    for p in dict.fromkeys([path, _WELL_KNOWN]):
        app.add_route(p, endpoint, methods=["GET"], include_in_schema=False)
    return path


_WELL_KNOWN = "/.well-known/oauth-protected-resource"


__all__ = [
    "Amount",
    "Refusal",
    "add_error_handler",
    "add_resource_metadata",
    "http_error",
    "public_url",
    "refusal_handler",
    "require_scope",
    "spend",
    "resource_metadata_endpoint",
]
