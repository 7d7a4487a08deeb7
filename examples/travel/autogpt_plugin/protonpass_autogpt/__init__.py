"""An AutoGPT plugin (``auto-gpt-plugin-template`` interface) that gives the
agent one command, ``authenticated_request``: an HTTP request to one API with
scoped, short-lived, key-bound (DPoP) access tokens from the owner's broker.

The token and proofs stay in the plugin; the command returns only the status
and the body, and requests may only go under the configured API's base URL
(``/../x`` and its encoded forms are refused).

Configuration (AutoGPT's ``.env``):

- ``PROTONPASS_API_URL``: the API's base URL (required);
- ``PROTONPASS_AUDIENCE``: its audience (default: ``PROTONPASS_API_URL``);
- ``PROTONPASS_SCOPES``: space-separated scopes (default ``travel:search``);
- ``PROTONPASS_BROKER_URL``, ``PROTONPASS_AGENT_NAME`` (default ``autogpt``),
  ``PROTONPASS_ENROLLMENT_CODE`` (headless), ``PROTONPASS_HOME``: as for
  ``authenticate_with_proton``. Without an enrollment code or stored grant, the
  first command starts the owner's approval (URL and code on stderr).

Packaging: zip the ``protonpass_autogpt`` folder into AutoGPT's ``plugins/``
folder and allow it (``ALLOWLISTED_PLUGINS=ProtonPassPlugin``); AutoGPT's
environment needs ``protonpass-agent[httpx]``.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Optional, TypeVar

from auto_gpt_plugin_template import AutoGPTPluginTemplate

PromptGenerator = TypeVar("PromptGenerator")
MAX_BODY_CHARS = 4000


class ProtonPassPlugin(AutoGPTPluginTemplate):  # type: ignore[misc]
    """Registers ``authenticated_request`` with AutoGPT's prompt generator."""

    def __init__(self) -> None:
        super().__init__()
        self._name = "ProtonPassPlugin"
        self._version = "0.1.0"
        self._description = "Calls one API with scoped, key-bound access tokens approved by the owner."
        self._session: Any = None
        self._lock = threading.Lock()

    # -- configuration and session ------------------------------------------------

    @staticmethod
    def _api() -> str:
        api = os.environ.get("PROTONPASS_API_URL", "").rstrip("/")
        if not api:
            raise ValueError("PROTONPASS_API_URL is not set")
        return api

    def session(self) -> Any:
        """The session, created at first use (the owner's approval, or the enrollment code)."""
        with self._lock:
            if self._session is None or self._session.closed:
                from protonpass_agent import authenticate_with_proton

                self._session = authenticate_with_proton(
                    os.environ.get("PROTONPASS_SCOPES", "travel:search").split(),
                    os.environ.get("PROTONPASS_AUDIENCE") or self._api(),
                    agent_name=os.environ.get("PROTONPASS_AGENT_NAME", "autogpt"),
                    store=os.environ.get("PROTONPASS_HOME") or "file",
                )
            return self._session

    def close(self) -> None:
        """Revoke the session's access tokens (AutoGPT has no shutdown hook; the SDK also does this at exit)."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def _url(self, path: str) -> str:
        # The path is normalised (dot segments, %2e, %2f, %5c, backslashes)
        # before it is checked to stay under the API's base path.
        from protonpass_agent.paths import api_url

        return api_url(self._api(), path)

    # -- the command ----------------------------------------------------------------

    def authenticated_request(self, method: str, path: str, body: str = "", reason: str = "") -> str:
        """AutoGPT command: returns a JSON string {status, body} or a line starting with 'Error:'."""
        import httpx
        from protonpass_agent import ProtonPassError

        method = (method or "GET").upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            return f"Error: method {method} is not allowed"
        try:
            url = self._url(path)
            content: Optional[bytes] = None
            headers = {}
            if body and method != "GET":
                content = json.dumps(json.loads(body) if isinstance(body, str) else body).encode()
                headers["content-type"] = "application/json"
            auth = self.session().httpx_auth
            if reason:
                auth = auth.with_reason(reason[:300])
            with httpx.Client(timeout=30) as c:
                r = c.request(method, url, content=content, headers=headers, auth=auth)
        except ProtonPassError as e:
            return f"Error: {e.code}: {e}"
        except (ValueError, httpx.HTTPError) as e:
            return f"Error: {e}"
        text = r.text if len(r.text) <= MAX_BODY_CHARS else r.text[:MAX_BODY_CHARS] + "...(truncated)"
        return json.dumps({"status": r.status_code, "body": text})

    def can_handle_post_prompt(self) -> bool:
        return True

    def post_prompt(self, prompt: PromptGenerator) -> PromptGenerator:
        prompt.add_command(  # type: ignore[attr-defined]
            "Authenticated API request",
            "authenticated_request",
            {"method": "<GET|POST|PUT|PATCH|DELETE>", "path": "<path>", "body": "<json>", "reason": "<why>"},
            self.authenticated_request,
        )
        return prompt

    # -- the other hooks: not used -----------------------------------------------------

    def can_handle_on_response(self) -> bool:
        return False

    def on_response(self, response: str, *args: Any, **kwargs: Any) -> str:
        return response

    def can_handle_on_planning(self) -> bool:
        return False

    def on_planning(self, prompt: PromptGenerator, messages: list[Any]) -> Optional[str]:
        return None

    def can_handle_post_planning(self) -> bool:
        return False

    def post_planning(self, response: str) -> str:
        return response

    def can_handle_pre_instruction(self) -> bool:
        return False

    def pre_instruction(self, messages: list[Any]) -> list[Any]:
        return messages

    def can_handle_on_instruction(self) -> bool:
        return False

    def on_instruction(self, messages: list[Any]) -> Optional[str]:
        return None

    def can_handle_post_instruction(self) -> bool:
        return False

    def post_instruction(self, response: str) -> str:
        return response

    def can_handle_pre_command(self) -> bool:
        return False

    def pre_command(self, command_name: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return command_name, arguments

    def can_handle_post_command(self) -> bool:
        return False

    def post_command(self, command_name: str, response: str) -> str:
        return response

    def can_handle_chat_completion(self, messages: Any, model: str, temperature: float, max_tokens: int) -> bool:
        return False

    def handle_chat_completion(self, messages: Any, model: str, temperature: float, max_tokens: int) -> str:
        return ""
