"""Type stub of the compiled module ``protonpass_agent._native``."""

from typing import Any, Awaitable, Callable, Optional, TypeVar, final

from typing_extensions import Concatenate, ParamSpec

_P = ParamSpec("_P")
_T = TypeVar("_T")

# The awaitable face of a flow (`x_async`) takes its blocking face's (`x`)
# parameters: declared once, on the blocking face. Likewise the awaitable
# constructor `Verifier.connect` takes the constructor's (`__new__` without
# `cls`): the decorated stub's own parameters do not count.
def _awaitable(blocking: Callable[_P, _T]) -> Callable[_P, Awaitable[_T]]: ...
def _awaitable_new(
    new: Callable[Concatenate[Any, _P], _T],
) -> Callable[[Callable[..., object]], Callable[_P, Awaitable[_T]]]: ...

__all__ = [
    "ProtonPassError",
    "ScopeNotGranted",
    "InsufficientScope",
    "InvalidScope",
    "AccessDenied",
    "Expired",
    "InvalidGrant",
    "InvalidToken",
    "InvalidProof",
    "InvalidRequest",
    "BrokerUnavailable",
    "InvalidResponse",
    "StorageError",
    "BudgetExceeded",
    "DevicePrompt",
    "Session",
    "OneTimeToken",
    "authenticate",
    "authenticate_async",
    "Identity",
    "Verifier",
    "resource_metadata",
    "resource_metadata_path",
    "resource_metadata_url",
    "VerifiedProof",
    "jwk_thumbprint",
    "verify_signature",
    "verify_ed25519",
    "sign_ed25519",
    "access_token_hash",
    "verify_proof",
    "version",
    "__version__",
]

__version__: str

def version() -> str: ...

class ProtonPassError(Exception):
    code: Optional[str]
    reason: Optional[str]

class ScopeNotGranted(ProtonPassError): ...
class InsufficientScope(ProtonPassError): ...
class InvalidScope(ProtonPassError): ...
class AccessDenied(ProtonPassError): ...
class Expired(ProtonPassError): ...
class InvalidGrant(ProtonPassError): ...
class InvalidToken(ProtonPassError): ...
class InvalidProof(ProtonPassError): ...
class InvalidRequest(ProtonPassError): ...
class BrokerUnavailable(ProtonPassError): ...
class InvalidResponse(ProtonPassError): ...
class StorageError(ProtonPassError): ...
class BudgetExceeded(ProtonPassError): ...

@final
class DevicePrompt:
    @property
    def verification_uri(self) -> str: ...
    @property
    def verification_uri_complete(self) -> Optional[str]: ...
    @property
    def user_code(self) -> str: ...
    @property
    def expires_in(self) -> int: ...

@final
class OneTimeToken:
    @property
    def audience(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def expires_in(self) -> int: ...
    @property
    def authorization_details(self) -> str: ...

@final
class Session:
    @property
    def scopes(self) -> list[str]: ...
    @property
    def expires_at(self) -> int: ...
    @property
    def thumbprint(self) -> str: ...
    @property
    def audiences(self) -> list[str]: ...
    @property
    def closed(self) -> bool: ...
    def headers(self, method: str, url: str, reason: Optional[str] = None) -> list[tuple[str, str]]: ...
    def route(self, url: str) -> str: ...
    def observe_response(
        self, url: str, status: int, www_authenticate: Optional[str] = None, dpop_nonce: Optional[str] = None
    ) -> str: ...
    def step_up(
        self,
        url: str,
        www_authenticate: str,
        amount: Optional[str] = None,
        currency: Optional[str] = None,
        payee: Optional[str] = None,
        binding_message: Optional[str] = None,
    ) -> OneTimeToken: ...
    step_up_async = _awaitable(step_up)
    def one_time_headers(self, token: OneTimeToken, method: str, url: str) -> list[tuple[str, str]]: ...
    def renew(self) -> None: ...
    renew_async = _awaitable(renew)
    def add_audience(self, audience: str) -> list[str]: ...
    add_audience_async = _awaitable(add_audience)
    def close(self, revoke_grant: bool = False) -> None: ...
    close_async = _awaitable(close)

def authenticate(
    scope: list[str],
    audience: str,
    broker: Optional[str] = None,
    agent_name: Optional[str] = None,
    profile: Optional[str] = None,
    store: Optional[str] = None,
    prompt: Optional[Callable[[DevicePrompt], object]] = None,
    ttl: Optional[int] = None,
    required: Optional[list[str]] = None,
    reason: Optional[str] = None,
    enrollment_code: Optional[str] = None,
    passphrase: Optional[str] = None,
    extend: bool = False,
    allow_step_up: bool = False,
) -> Session: ...

authenticate_async = _awaitable(authenticate)

@final
class Identity:
    @property
    def owner(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def scopes(self) -> list[str]: ...
    @property
    def token_id(self) -> str: ...
    @property
    def grant_id(self) -> str: ...
    @property
    def reason(self) -> Optional[str]: ...
    @property
    def jkt(self) -> str: ...
    @property
    def expires_at(self) -> int: ...
    def require(self, scope: str) -> None: ...
    def require_amount(self, resource_action: str, amount: str) -> None: ...

@final
class Verifier:
    def __new__(
        cls,
        issuer: str,
        audience: str,
        *,
        require_nonce: bool = False,
        follow_feed: bool = True,
        max_staleness: float = 60.0,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        introspect_when_stale: bool = False,
        report_usage: bool = False,
        owner: Optional[str] = None,
        resource_metadata_url: Optional[str] = None,
        accept_bearer: bool = False,
    ) -> Verifier: ...
    @staticmethod
    @_awaitable_new(__new__)
    def connect() -> None: ...
    def verify(self, method: str, url: str, headers: list[tuple[str, str]]) -> Identity: ...
    verify_async = _awaitable(verify)
    def spend(self, agent: Identity, scope: str, amount: str, currency: str, idempotency_key: str) -> str: ...
    spend_async = _awaitable(spend)
    def refund(self, agent: Identity, idempotency_key: str) -> str: ...
    refund_async = _awaitable(refund)
    def feed_status(self) -> tuple[int, bool]: ...
    def stop(self) -> None: ...

@final
class VerifiedProof:
    @property
    def jwk(self) -> dict[str, str]: ...
    @property
    def jkt(self) -> str: ...
    @property
    def alg(self) -> str: ...
    @property
    def jti(self) -> str: ...
    @property
    def htm(self) -> str: ...
    @property
    def htu(self) -> str: ...
    @property
    def iat(self) -> int: ...
    @property
    def nonce(self) -> Optional[str]: ...
    @property
    def reason(self) -> Optional[str]: ...

def resource_metadata(
    resource: str,
    authorization_server: str,
    *,
    scopes_supported: list[str] = ...,
    resource_documentation: Optional[str] = None,
) -> str: ...
def resource_metadata_path(resource: str) -> str: ...
def resource_metadata_url(resource: str) -> str: ...
def jwk_thumbprint(jwk: str) -> str: ...
def verify_signature(jwk: str, alg: str, message: bytes, signature: bytes) -> None: ...
def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None: ...
def sign_ed25519(private_jwk: str, message: bytes) -> bytes: ...
def access_token_hash(access_token: str) -> str: ...
def verify_proof(
    proof: str,
    method: str,
    url: str,
    *,
    now: Optional[int] = None,
    access_token: Optional[str] = None,
    expected_jkt: Optional[str] = None,
    allow_es256: bool = True,
    max_age: int = 10,
    max_skew: int = 10,
) -> VerifiedProof: ...
