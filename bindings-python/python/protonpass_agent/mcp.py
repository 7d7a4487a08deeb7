"""MCP servers protected by DPoP-bound tokens (the official ``mcp`` SDK, 1.x and 2.x).

Wrap the server's Streamable HTTP app with :func:`protect` and mark tools with
:func:`require_scope`::

    mcp = FastMCP("travel")            # mcp 1.x; MCPServer("travel") in mcp 2.x

    @mcp.tool()
    @require_scope("travel:book")
    async def book_flight(flight: str) -> dict:
        return {"booking": ..., "owner": current_agent().owner}

    app = protect(mcp.streamable_http_app(), issuer=BROKER, resource="https://travel.example/mcp")

Every HTTP request to the app must carry a valid ``Authorization: DPoP`` token
for ``resource`` and a fresh proof for the URL the client addressed (checked
against ``base_url``, never against the ``Host`` header); anything else is
answered ``401`` (or ``403`` for scopes the whole server requires) with the
verifier's ``WWW-Authenticate`` plus the RFC 9728 ``resource_metadata`` link.
The metadata itself is served at ``/.well-known/oauth-protected-resource``
plus the resource's path, unauthenticated.

A tool whose scope the token lacks is refused inside the MCP protocol: the
call returns ``isError`` with text that starts with the error code
(``insufficient_scope: ...``), which an agent's model can read. Each request
is verified on its own, so a revoked token stops the MCP session at its next
request.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
from decimal import Decimal
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar
from urllib.parse import urlsplit

from ._metadata import resource_metadata, resource_metadata_path, resource_metadata_url
from ._native import Identity, ProtonPassError
from ._verifier import Verifier

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])

#: Where the identity is kept in the ASGI scope's ``state`` (``request.state.protonpass_agent``).
STATE_KEY = "protonpass_agent"

_current: contextvars.ContextVar[Optional[Identity]] = contextvars.ContextVar("protonpass_agent_mcp", default=None)


class NoAgent(RuntimeError):
    """:func:`current_agent` was called outside a request that :func:`protect` verified."""


def _sdk_request() -> Any:
    """The HTTP request of the MCP message being handled, where the SDK keeps it (mcp 1.x)."""
    try:
        from mcp.server.lowlevel.server import request_ctx  # type: ignore[import-not-found,attr-defined,unused-ignore]
    except ImportError:
        return None
    try:
        ctx = request_ctx.get()
    except LookupError:
        return None
    return getattr(ctx, "request", None)


def current_agent() -> Identity:
    """The verified caller of the MCP message being handled: ``owner``, ``agent``, ``grant_id``, ``scopes``, ``reason``.

    With ``mcp`` 1.x the identity comes from the HTTP request the SDK attaches
    to each message (a stateful session handles messages in a task started by
    its first request, whose context variables would be stale); with ``mcp``
    2.x, which runs each message in the context of the request that carried
    it, from a context variable set by :func:`protect`. Raises
    :class:`NoAgent` outside a verified request.
    """
    request = _sdk_request()
    if request is not None:
        state = request.scope.get("state") if hasattr(request, "scope") else None
        identity = state.get(STATE_KEY) if isinstance(state, dict) else None
        if isinstance(identity, Identity):
            return identity
        raise NoAgent("this MCP request was not verified: wrap the server's app with protonpass_agent.mcp.protect")
    identity = _current.get()
    if identity is None:
        raise NoAgent("no verified agent here: wrap the server's app with protonpass_agent.mcp.protect")
    return identity


def _tool_error(message: str) -> Exception:
    """The SDK's own ``ToolError``, whose text reaches the client (mcp 2.x hides any other exception's)."""
    try:
        from mcp.server.mcpserver.exceptions import ToolError  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return PermissionError(message)
    error: Exception = ToolError(message)
    return error


def _check(scope: str, amount: Optional[str], arguments: dict[str, Any]) -> Identity:
    identity = current_agent()
    try:
        if amount is None:
            identity.require(scope)
        else:
            value = arguments.get(amount)
            if value is None:
                raise _tool_error(f"invalid_request: the call names no {amount} to check against {scope}")
            value = value if isinstance(value, str) else str(Decimal(str(value)))
            identity.require_amount(scope, value)
    except ProtonPassError as e:
        raise _tool_error(f"{e.code or 'insufficient_scope'}: {e}") from None
    return identity


def require_scope(scope: str, *, amount: Optional[str] = None) -> Callable[[F], F]:
    """Decorate an MCP tool so that it runs only for a token carrying ``scope``.

    Put it under the SDK's ``@mcp.tool()``; the tool's signature (and so its
    input schema) is unchanged. With ``amount`` (the name of a tool argument),
    ``scope`` is a ``resource:action`` and the token must allow that amount
    (``payment:execute:under-500`` allows 499.99). A refusal is raised as the
    SDK's ``ToolError`` with text ``"<code>: <description>"``, so the client
    sees ``insufficient_scope`` in the result. Refusals are reported to the
    broker like the verifier's own when it reports usage.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            if amount is None:
                return {}
            bound = signature.bind_partial(*args, **kwargs)
            return dict(bound.arguments)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_tool(*args: Any, **kwargs: Any) -> Any:
                _check(scope, amount, arguments(args, kwargs))
                return await fn(*args, **kwargs)

            return async_tool  # type: ignore[return-value]

        @functools.wraps(fn)
        def tool(*args: Any, **kwargs: Any) -> Any:
            _check(scope, amount, arguments(args, kwargs))
            return fn(*args, **kwargs)

        return tool  # type: ignore[return-value]

    return decorate


class ProtonPassMCP:
    """ASGI middleware verifying every request to an MCP server's app; see :func:`protect`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        resource: str,
        issuer: str,
        scopes: Iterable[str] = (),
        scopes_supported: Optional[Iterable[str]] = None,
        resource_documentation: Optional[str] = None,
        accept_bearer: bool = False,
    ) -> None:
        if verifier.base_url is None:
            raise RuntimeError(
                "the Verifier has no base_url: pass Verifier(..., base_url='https://mcp.example'), "
                "the public URL clients address this server by (DPoP proofs are checked against it)"
            )
        self.app = app
        self.verifier = verifier
        self.scopes = list(scopes)
        self._metadata_url = resource_metadata_url(resource)
        self._metadata_path = resource_metadata_path(resource)
        doc = resource_metadata(
            resource,
            issuer,
            scopes_supported=list(scopes_supported or ()),
            resource_documentation=resource_documentation,
        )
        if accept_bearer:
            # The verifier also takes bearer tokens (clients without DPoP): say so (RFC 9728).
            doc["dpop_bound_access_tokens_required"] = False
        self._metadata = json.dumps(doc).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # No unverified way in: a WebSocket (or any other) connection is
            # closed before the app sees it.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"] == self._metadata_path and scope["method"] in ("GET", "HEAD"):
            await _respond(send, 200, self._metadata, [(b"cache-control", b"max-age=300")])
            return
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{self.verifier.base_url}{scope['path']}" + (f"?{query}" if query else "")
        try:
            identity = await self.verifier.verify_async(scope["method"], url, scope["headers"])
            for s in self.scopes:
                identity.require(s)
        except ProtonPassError as e:
            await self._refuse(send, e)
            return
        scope.setdefault("state", {})[STATE_KEY] = identity
        token = _current.set(identity)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)

    async def _refuse(self, send: Send, e: ProtonPassError) -> None:
        status = getattr(e, "status", None) or 401
        www = getattr(e, "www_authenticate", None) or 'DPoP algs="EdDSA"'
        if "resource_metadata=" not in www:
            www += f', resource_metadata="{self._metadata_url}"'
        headers = [(b"www-authenticate", www.encode("latin-1"))]
        nonce = getattr(e, "dpop_nonce", None)
        if nonce:
            headers.append((b"dpop-nonce", nonce.encode("latin-1")))
        body = json.dumps({"error": e.code or "invalid_token", "error_description": str(e)}).encode()
        await _respond(send, int(status), body, headers)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *([] if status == 200 else [(b"cache-control", b"no-store")]),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def protect(
    app: ASGIApp,
    *,
    issuer: str,
    resource: str,
    base_url: Optional[str] = None,
    verifier: Optional[Verifier] = None,
    scopes: Iterable[str] = (),
    scopes_supported: Optional[Iterable[str]] = None,
    resource_documentation: Optional[str] = None,
    **verifier_options: Any,
) -> ProtonPassMCP:
    """Protect an MCP server's Streamable HTTP app (``mcp.streamable_http_app()``).

    ``resource`` is the server's MCP endpoint as clients address it (the
    tokens' audience, e.g. ``https://travel.example/mcp``), ``issuer`` the
    broker. ``base_url`` (default: the origin of ``resource``) is the public
    origin the DPoP proofs are checked against. Without ``verifier``, one is
    built from ``issuer``, ``resource`` and ``verifier_options`` (``owner``,
    ``report_usage``, ...; see :class:`~protonpass_agent.Verifier`). ``scopes``
    are required of every request (``403 insufficient_scope`` otherwise);
    ``scopes_supported`` is published in the metadata (built by the core,
    :func:`protonpass_agent.resource_metadata`; ``resource`` must be ``https``,
    or ``http`` on loopback). Lifespan events pass through, so the SDK's
    session manager starts as usual.

    ``accept_bearer=True`` (a verifier option) also accepts the bearer tokens
    the broker issues to MCP clients that cannot do DPoP, for resources whose
    owner allows them (``protonpass-broker resource bearer URL on``); the
    metadata then says ``dpop_bound_access_tokens_required: false``. Pass the
    same ``accept_bearer`` to :class:`ProtonPassMCP` when you build the
    verifier yourself.
    """
    if verifier is None:
        parts = urlsplit(resource)
        verifier_options.setdefault("resource_metadata_url", resource_metadata_url(resource))
        verifier = Verifier(
            issuer, resource, base_url=base_url or f"{parts.scheme}://{parts.netloc}", **verifier_options
        )
    return ProtonPassMCP(
        app,
        verifier=verifier,
        resource=resource,
        issuer=issuer,
        scopes=scopes,
        scopes_supported=scopes_supported,
        resource_documentation=resource_documentation,
        accept_bearer=bool(verifier_options.get("accept_bearer", False)),
    )


__all__ = [
    "STATE_KEY",
    "NoAgent",
    "ProtonPassMCP",
    "current_agent",
    "protect",
    "require_scope",
]
