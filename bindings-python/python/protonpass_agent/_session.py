"""The agent side: :func:`authenticate_with_proton` and :class:`Session`."""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Generic,
    Iterable,
    Optional,
    TypeVar,
    Union,
    overload,
)

from . import _native

if TYPE_CHECKING:
    # Type checkers only: the package has no dependency, and Python 3.9's
    # typing has no ParamSpec.
    from typing_extensions import ParamSpec, Unpack

    from ._httpx import HttpxAuth
    from ._httpx2 import Httpx2Auth
    from ._protocols import StepUpDetails
    from ._requests import RequestsAuth

    _P = ParamSpec("_P")
_T = TypeVar("_T")

Prompt = Callable[[_native.DevicePrompt], object]


@contextlib.contextmanager
def _close_errors(exc: Optional[BaseException]) -> Generator[None, None, None]:
    """How a ``with`` block ends a session: an error closing it is raised, unless
    the block is already ending on an exception ``exc`` (which then goes on)."""
    try:
        yield
    except _native.ProtonPassError:
        if exc is None:
            raise


def _awaitable_twin(
    blocking: Callable[_P, _T],
) -> Callable[[Callable[[dict[str, Any]], Awaitable[_T]]], Callable[_P, Coroutine[Any, Any, _T]]]:
    """Make the decorated coroutine function the awaitable twin of ``blocking``,
    taking the very same parameters: one parameter list (with its defaults) for
    both faces of a flow. The decorated function gets the arguments bound to
    those parameters, defaults applied, by name."""
    signature = inspect.signature(blocking)

    def twin_of(flow: Callable[[dict[str, Any]], Awaitable[_T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
        async def twin(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return await flow(dict(bound.arguments))

        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(twin, attr, getattr(flow, attr))
        twin.__signature__ = signature  # type: ignore[attr-defined]
        return twin

    return twin_of


class _FromNative(Generic[_T]):
    """A read-only attribute of a :class:`Session` that its native session
    holds: ``get`` reads it there, on each access."""

    def __init__(self, get: Callable[[_native.Session], _T], doc: str) -> None:
        self._get = get
        self.__doc__ = doc

    @overload
    def __get__(self, session: None, owner: type[Session]) -> _FromNative[_T]: ...
    @overload
    def __get__(self, session: Session, owner: type[Session]) -> _T: ...
    def __get__(self, session: Optional[Session], owner: type[Session]) -> Union[_T, _FromNative[_T]]:
        return self if session is None else self._get(session._native)


StoreArg = Union[str, "os.PathLike[str]"]

_live: weakref.WeakSet[Session] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_hooks_installed = False


def _close_all() -> None:
    """Revoke the access tokens of every open session (interpreter exit, SIGTERM)."""
    for s in list(_live):
        try:
            s.close()
        except Exception:  # noqa: BLE001 - best effort while the process ends
            pass
    # The runtime's threads take the GIL once more after an awaited native call
    # has resumed Python (to release the call's Python objects). If the process
    # is already finalizing by then, CPython aborts ("PyGILState_Release: thread
    # state must be current"): `asyncio.run(main())` whose last await is
    # `aclose()` hit it about every other run. Giving up the GIL briefly here,
    # while the interpreter is still whole, lets them finish.
    time.sleep(0.02)


def _on_sigterm(previous: Any) -> Callable[[int, Optional[FrameType]], None]:
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        _close_all()
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    return handler


def _install_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        atexit.register(_close_all)
        # Signal handlers can only be set from the main thread, and only when
        # the host has not chosen to ignore SIGTERM.
        if threading.current_thread() is threading.main_thread():
            try:
                previous = signal.getsignal(signal.SIGTERM)
                if previous is not signal.SIG_IGN:
                    signal.signal(signal.SIGTERM, _on_sigterm(previous))
            except (ValueError, OSError):
                pass


class Session:
    """An authenticated agent session.

    Holds DPoP-bound access tokens (one per audience), renewed in the
    background. Use it as a context manager (``with`` or ``async with``):
    leaving the block revokes its access tokens (not the grant). It is also
    closed at interpreter exit and on SIGTERM where the host allows. Safe to
    share between threads.
    """

    __slots__ = ("_native", "_allow_step_up", "__weakref__")

    def __init__(self, native: _native.Session, allow_step_up: bool = False) -> None:
        self._native = native
        self._allow_step_up = allow_step_up
        _install_hooks()
        _live.add(self)

    scopes = _FromNative(lambda n: n.scopes, "The scopes granted for the session's first audience.")
    expires_at = _FromNative(lambda n: n.expires_at, "When the current access token expires (seconds since the epoch).")
    thumbprint = _FromNative(
        lambda n: n.thumbprint, "The agent key's RFC 7638 thumbprint, which the tokens are bound to."
    )
    audiences = _FromNative(lambda n: n.audiences, "The audiences this session holds tokens for.")
    closed = _FromNative(lambda n: n.closed, "Whether the session was closed.")

    def headers(self, method: str, url: str, *, reason: Optional[str] = None) -> dict[str, str]:
        """The headers for one request: ``Authorization: DPoP ...`` and a fresh ``DPoP`` proof.

        ``reason`` (at most 300 characters) is signed into the proof and audited.
        ``url`` must lie under one of the session's audiences (same scheme, host
        and port, and a path under the audience's path, compared after
        normalisation); anything else raises :class:`InvalidRequest`, so the token
        is never attached to a request to another server. A URL under an
        audience the broker serves through its gateway must be routed first
        (:meth:`route`): the token never goes to the upstream itself.
        """
        return dict(self._native.headers(method, url, reason))

    def route(self, url: str) -> str:
        """Where a request for ``url`` goes.

        For a URL under an audience the broker serves through its
        credential-injecting gateway (its metadata says which), the same path
        and query under the gateway URL; any other URL unchanged. The auth
        classes and the LangChain tools route each request, so code written
        for an upstream API's real URLs works unchanged.
        """
        return self._native.route(url)

    @property
    def httpx_auth(self) -> HttpxAuth:
        """An ``httpx.Auth`` for sync and async clients (answers nonce challenges, renews)."""
        from ._httpx import HttpxAuth

        return HttpxAuth(self)

    @property
    def httpx2_auth(self) -> Httpx2Auth:
        """An ``httpx2.Auth`` (what ``mcp`` 2.x's transport uses): the same flow as :attr:`httpx_auth`."""
        from ._httpx2 import Httpx2Auth

        return Httpx2Auth(self)

    @property
    def requests_auth(self) -> RequestsAuth:
        """A ``requests.auth.AuthBase`` (answers nonce challenges, renews)."""
        from ._requests import RequestsAuth

        return RequestsAuth(self)

    def step_up(self, url: str, www_authenticate: str, **details: Unpack[StepUpDetails]) -> _native.OneTimeToken:
        """Ask the owner for a one-time authorization of a refused call.

        ``www_authenticate`` is the ``403`` challenge (``insufficient_scope`` or
        ``budget_exceeded``) the API answered for ``url``. For a payment, name
        the ``payee`` (and ``amount`` and ``currency`` when the challenge does
        not; amounts are decimal strings). ``binding_message`` is the reason
        shown to the owner (at most 200 characters). Waits for the decision,
        calling the session's ``prompt`` once; raises :class:`AccessDenied`,
        :class:`Expired`, or :class:`InvalidGrant` (the grant was revoked).
        Needs ``allow_step_up=True`` (else :class:`InvalidRequest`). Retry the
        call once with :meth:`one_time_headers`: the token is spent by it.
        The keyword arguments are those of :class:`StepUpDetails`, each
        ``None`` when left out.
        """
        return self._native.step_up(url, www_authenticate, **details)

    async def step_up_async(
        self, url: str, www_authenticate: str, **details: Unpack[StepUpDetails]
    ) -> _native.OneTimeToken:
        """:meth:`step_up` for asyncio."""
        return await self._native.step_up_async(url, www_authenticate, **details)

    @property
    def allows_step_up(self) -> bool:
        """Whether the session was opened with ``allow_step_up=True``."""
        return self._allow_step_up

    def one_time_headers(self, token: _native.OneTimeToken, method: str, url: str) -> dict[str, str]:
        """The headers for the one call a one-time token allows."""
        return dict(self._native.one_time_headers(token, method, url))

    def renew(self) -> None:
        """Renew every access token now."""
        self._native.renew()

    async def renew_async(self) -> None:
        """Renew every access token now."""
        await self._native.renew_async()

    def add_audience(self, audience: str) -> list[str]:
        """Get a token for another API too; returns the scopes granted for it."""
        return self._native.add_audience(audience)

    async def add_audience_async(self, audience: str) -> list[str]:
        """Get a token for another API too; returns the scopes granted for it."""
        return await self._native.add_audience_async(audience)

    def close(self, *, revoke_grant: bool = False) -> None:
        """Revoke the session's access tokens (and the stored grant when ``revoke_grant``)."""
        _live.discard(self)
        self._native.close(revoke_grant)

    async def aclose(self, *, revoke_grant: bool = False) -> None:
        """Revoke the session's access tokens (and the stored grant when ``revoke_grant``)."""
        _live.discard(self)
        await self._native.close_async(revoke_grant)

    def _observe(self, url: str, status: int, www_authenticate: Optional[str], nonce: Optional[str]) -> str:
        return self._native.observe_response(url, status, www_authenticate, nonce)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: Optional[BaseException], tb: object) -> None:
        with _close_errors(exc):
            self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, exc_type: object, exc: Optional[BaseException], tb: object) -> None:
        with _close_errors(exc):
            await self.aclose()

    def __repr__(self) -> str:
        return repr(self._native)


def _args(
    scope: Union[str, Iterable[str]], store: Optional[StoreArg], prompt: Optional[Prompt]
) -> tuple[list[str], Optional[str]]:
    if prompt is not None and inspect.iscoroutinefunction(prompt):
        # It is called from the runtime's thread, where nothing would await it.
        raise TypeError("prompt must be a plain function (it may hand the prompt to your event loop)")
    scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope]
    return scopes, (None if store is None else os.fspath(store))


def _target(audience: Optional[str], resource: Optional[str]) -> str:
    if audience is not None and resource is not None and audience != resource:
        raise _native.InvalidRequest("audience and resource name different APIs: pass one of them")
    target = resource if resource is not None else audience
    if not target:
        raise _native.InvalidRequest("name the API: resource='https://api.example/mcp' (or audience=)")
    return target


def _native_args(
    scope: Union[str, Iterable[str]],
    audience: Optional[str],
    resource: Optional[str],
    store: Optional[StoreArg],
    prompt: Optional[Prompt],
    required: Optional[Iterable[str]],
    **options: Any,
) -> tuple[list[str], str, dict[str, Any]]:
    """The arguments of ``_native.authenticate`` (and of its awaitable twin)
    from those of :func:`authenticate_with_proton`."""
    scopes, store_s = _args(scope, store, prompt)
    options.update(store=store_s, prompt=prompt, required=None if required is None else list(required))
    return scopes, _target(audience, resource), options


def authenticate_with_proton(
    scope: Union[str, Iterable[str]] = (),
    audience: Optional[str] = None,
    *,
    resource: Optional[str] = None,
    broker: Optional[str] = None,
    agent_name: Optional[str] = None,
    profile: Optional[str] = None,
    store: Optional[StoreArg] = "file",
    prompt: Optional[Prompt] = None,
    ttl: Optional[int] = None,
    required: Optional[Iterable[str]] = None,
    reason: Optional[str] = None,
    enrollment_code: Optional[str] = None,
    passphrase: Optional[str] = None,
    extend: bool = False,
    allow_step_up: bool = False,
) -> Session:
    """Get a session with access tokens for ``scope`` on ``audience``.

    Uses the grant stored for (broker, profile, agent name); without one,
    redeems ``enrollment_code`` or runs the device grant, calling ``prompt``
    (default: one line on stderr) with a :class:`DevicePrompt` for the owner.
    Omitted ``broker``, ``agent_name``, ``profile`` and ``enrollment_code``
    come from ``PROTONPASS_BROKER_URL``, ``PROTONPASS_AGENT_NAME``,
    ``PROTONPASS_PROFILE`` and ``PROTONPASS_ENROLLMENT_CODE``; the file store
    lives in ``PROTONPASS_HOME``. ``store`` is ``"file"``, ``"memory"`` or a
    directory; ``passphrase`` (or ``PROTONPASS_PASSPHRASE``) seals the stored
    key and refresh token. ``required`` (default: every scope) must be granted, else
    :class:`ScopeNotGranted`; ``extend=True`` asks the owner again when the
    stored grant lacks some. When the owner narrows the scopes on the
    approval page, the session holds what was granted; a new grant missing a
    required scope is revoked at once, never stored.

    ``allow_step_up=True`` lets the session ask the owner for one-time
    authorizations (:meth:`Session.step_up`); it is off by default.

    ``reason`` says why the agent acts: it is shown to the owner on the
    approval page and by ``protonpass-broker pending``, marked as the agent's
    own words (nothing checks it), and signed into every proof.

    Blocks with the GIL released. The wait for the owner's approval ends at
    once, and the request is withdrawn at the broker, when ``prompt`` raises
    (that exception propagates) or on Ctrl-C (``KeyboardInterrupt``).

    ``resource`` is the same as ``audience`` (RFC 8707's name). Without a
    broker URL (argument or ``PROTONPASS_BROKER_URL``), the broker is found
    from the resource's RFC 9728 metadata (its ``401`` challenge's
    ``resource_metadata``, else ``/.well-known/oauth-protected-resource`` with
    the resource's path, else the root one), which must name that very
    resource. Without ``scope``, the scopes are the ``scope`` of the resource's
    ``401`` challenge, else its ``scopes_supported``.
    """
    # Every parameter, as the native function takes them: first, so that
    # locals() holds nothing else.
    scopes, target, options = _native_args(**locals())
    native = _native.authenticate(scopes, target, **options)
    return Session(native, allow_step_up)


@_awaitable_twin(authenticate_with_proton)
async def authenticate_with_proton_async(args: dict[str, Any]) -> Session:
    """:func:`authenticate_with_proton` for asyncio.

    Cancelling the task (``asyncio.CancelledError``) while it waits for the
    owner's approval withdraws the request at the broker.
    """
    scopes, target, options = _native_args(**args)
    native = await _native.authenticate_async(scopes, target, **options)
    return Session(native, args["allow_step_up"])
