"""LangChain tools that call an API with a session's credentials.

The model chooses the method, the path and the body; the tool signs the
request with the session (DPoP proof and access token) and returns only the
response status and body. The token never enters the conversation, and
requests can only go under the configured API's base URL: the path is
normalised first (dot segments, ``%2e``, ``%2f``, ``%5c``, backslashes; see
:func:`protonpass_agent.paths.api_url`), so ``/../admin`` is refused.

Needs ``pip install 'protonpass-agent[langchain]'`` (``langchain-core`` and ``httpx``).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

try:
    import httpx
    from langchain_core.tools import BaseTool, ToolException
    from pydantic import BaseModel, Field
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("protonpass_agent.langchain needs: pip install 'protonpass-agent[langchain]'") from e

from ._native import InvalidRequest
from ._session import Session
from .paths import api_url

MAX_RESPONSE_CHARS = 8000


class ApiRequest(BaseModel):
    """What the model fills in to call the API."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(description="HTTP method")
    path: str = Field(description="Path on the API, starting with '/', with any query string")
    body: Optional[dict[str, Any]] = Field(default=None, description="JSON body, if any")
    reason: Optional[str] = Field(
        default=None, description="Why this call is needed, in one sentence (recorded in the audit log)"
    )


class ProtonPassApiTool(BaseTool):
    """Calls one API on the owner's behalf with the session's scoped credentials."""

    name: str = "call_api"
    description: str = (
        "Call the API with the agent's credentials. Give the HTTP method, the path, an optional JSON body "
        "and the reason for the call. Returns the HTTP status and the response body."
    )
    args_schema: type[BaseModel] = ApiRequest
    handle_tool_error: bool = True

    session: Session
    base_url: str
    timeout: float = 30.0

    def _url(self, path: str) -> str:
        try:
            return api_url(self.base_url, path)
        except ValueError as e:
            raise ToolException(str(e)) from None

    @staticmethod
    def _answer(r: httpx.Response) -> str:
        text = r.text
        if len(text) > MAX_RESPONSE_CHARS:
            text = text[:MAX_RESPONSE_CHARS] + "...(truncated)"
        return json.dumps({"status": r.status_code, "body": text})

    def _run(
        self, method: str, path: str, body: Optional[dict[str, Any]] = None, reason: Optional[str] = None, **_: Any
    ) -> str:
        auth = self.session.httpx_auth if reason is None else self.session.httpx_auth.with_reason(reason)
        url = self._url(path)
        try:
            with httpx.Client(timeout=self.timeout) as c:
                r = c.request(method, url, json=body, auth=auth)
        except InvalidRequest as e:  # e.g. a base URL wider than the session's audiences
            raise ToolException(str(e)) from None
        return self._answer(r)

    async def _arun(
        self, method: str, path: str, body: Optional[dict[str, Any]] = None, reason: Optional[str] = None, **_: Any
    ) -> str:
        auth = self.session.httpx_auth if reason is None else self.session.httpx_auth.with_reason(reason)
        url = self._url(path)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as c:
                r = await c.request(method, url, json=body, auth=auth)
        except InvalidRequest as e:  # e.g. a base URL wider than the session's audiences
            raise ToolException(str(e)) from None
        return self._answer(r)


def api_tools(
    session: Session, base_url: str, *, name: str = "call_api", description: Optional[str] = None
) -> list[BaseTool]:
    """A small toolkit: one :class:`ProtonPassApiTool` for ``base_url``."""
    tool = ProtonPassApiTool(session=session, base_url=base_url, name=name)
    if description:
        tool.description = description
    return [tool]


__all__ = ["ApiRequest", "ProtonPassApiTool", "api_tools"]
