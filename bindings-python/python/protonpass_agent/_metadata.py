"""RFC 9728 protected-resource metadata, built by the core: what an API serves
at ``/.well-known/oauth-protected-resource`` so that clients that know only its
URL find the broker, the scopes and the proof requirements."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional

from . import _native


def resource_metadata(
    resource: str,
    authorization_server: str,
    *,
    scopes_supported: Sequence[str] = (),
    resource_documentation: Optional[str] = None,
) -> dict[str, Any]:
    """The metadata document of ``resource`` (its URL, the audience of its
    tokens) protected by the broker whose issuer is ``authorization_server``.

    ``scopes_supported`` lists the scopes clients may ask for. DPoP-bound
    tokens are required. Raises :class:`InvalidRequest`-family errors for a
    resource that is not ``https`` (``http`` only on loopback), has a query or
    fragment, or a scope that is not well formed.
    """
    doc: dict[str, Any] = json.loads(
        _native.resource_metadata(
            resource,
            authorization_server,
            scopes_supported=list(scopes_supported),
            resource_documentation=resource_documentation,
        )
    )
    return doc


def resource_metadata_path(resource: str) -> str:
    """Where ``resource``'s metadata is served: ``/.well-known/oauth-protected-resource``
    followed by the resource's path (``/.well-known/oauth-protected-resource/mcp``
    for ``https://api.example/mcp``)."""
    return _native.resource_metadata_path(resource)


def resource_metadata_url(resource: str) -> str:
    """The absolute URL of ``resource``'s metadata, as ``401`` challenges announce it
    (pass it to :class:`Verifier` as ``resource_metadata_url``)."""
    return _native.resource_metadata_url(resource)


__all__ = ["resource_metadata", "resource_metadata_path", "resource_metadata_url"]
