"""Scoped, short-lived, key-bound access tokens for AI agents.

One import and one call::

    from protonpass_agent import authenticate_with_proton

    with authenticate_with_proton(scope=["travel:book"], audience="https://api.travel.example") as session:
        httpx.post("https://api.travel.example/bookings", json=..., auth=session.httpx_auth)

APIs verify callers with :class:`Verifier` (and :func:`protonpass_agent.fastapi.require_scope`).
"""

from ._metadata import resource_metadata, resource_metadata_path, resource_metadata_url
from ._native import (
    AccessDenied,
    BrokerUnavailable,
    BudgetExceeded,
    DevicePrompt,
    Expired,
    Identity,
    InsufficientScope,
    InvalidGrant,
    InvalidProof,
    InvalidRequest,
    InvalidResponse,
    InvalidScope,
    InvalidToken,
    OneTimeToken,
    ProtonPassError,
    ScopeNotGranted,
    StorageError,
    __version__,
)
from ._protocols import StepUpDetails
from ._session import Session, authenticate_with_proton, authenticate_with_proton_async
from ._spend import Spend
from ._verifier import Verifier, VerifierOptions

#: A revoked, expired or spent grant is an :class:`InvalidGrant`.
Revoked = InvalidGrant

__all__ = [
    "AccessDenied",
    "BrokerUnavailable",
    "BudgetExceeded",
    "DevicePrompt",
    "Expired",
    "Identity",
    "InsufficientScope",
    "InvalidGrant",
    "InvalidProof",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidScope",
    "InvalidToken",
    "OneTimeToken",
    "ProtonPassError",
    "Revoked",
    "ScopeNotGranted",
    "Session",
    "Spend",
    "StepUpDetails",
    "StorageError",
    "Verifier",
    "VerifierOptions",
    "__version__",
    "authenticate_with_proton",
    "authenticate_with_proton_async",
    "resource_metadata",
    "resource_metadata_path",
    "resource_metadata_url",
]
