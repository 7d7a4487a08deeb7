"""A LangChain agent that uses a code host's API through the broker's
gateway. Its code names the API's real URL (``https://api.code-host.example``)
and uses the package's LangChain tool as it would for any API; the session
sends each call to the broker's gateway (the broker's metadata says where),
which checks the agent's scoped token and injects the owner's key. The agent
never holds the key.

The chat model is scripted (deterministic, no model service): it reads the
recent commits, opens an issue summarising them, and tries to read another
repository, which its access does not cover (the gateway answers 403).

    python agent_langchain.py --broker URL --code ENROLLMENT_CODE
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Optional

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from protonpass_agent import authenticate_with_proton
from protonpass_agent.langchain import api_tools

API = "https://api.code-host.example"
SCOPES = ["repo:read:proj", "repo:write:proj"]


def say(text: str) -> None:
    print(f"[langchain] {text}", flush=True)


def _call(n: int, method: str, path: str, body: Optional[dict[str, Any]] = None) -> AIMessage:
    args: dict[str, Any] = {"method": method, "path": path, "reason": "weekly repository summary"}
    if body is not None:
        args["body"] = body
    return AIMessage(content="", tool_calls=[{"name": "code_host", "args": args, "id": f"c{n}"}])


class ScriptedModel(BaseChatModel):
    """Answers as a tool-calling model would, from the tool results so far."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        results = [json.loads(str(m.content)) for m in messages if isinstance(m, ToolMessage)]
        if not results:
            return _call(1, "GET", "/repos/me/proj/commits?per_page=2")
        if len(results) == 1:
            commits = json.loads(results[0]["body"])
            title = "Weekly summary: " + "; ".join(c["message"] for c in commits)
            return _call(2, "POST", "/repos/me/proj/issues", {"title": title})
        if len(results) == 2:
            return _call(3, "GET", "/repos/me/payroll/commits")
        statuses = [r["status"] for r in results]
        return AIMessage(content=f"Done: read the commits, opened an issue; statuses {statuses}.")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--code", required=True, help="the enrollment code the owner created")
    ap.add_argument("--name", default="repo-summariser")
    a = ap.parse_args()
    with authenticate_with_proton(
        SCOPES, API, broker=a.broker, agent_name=a.name, store="memory", enrollment_code=a.code
    ) as session:
        say(f"session for {API}: {session.scopes}; requests go to {session.route(API + '/')}")
        tools = api_tools(session, API, name="code_host", description="Call the code host's REST API.")
        model = ScriptedModel().bind_tools(tools)
        messages: list[BaseMessage] = [HumanMessage("Summarise this week's commits of me/proj in an issue.")]
        statuses = []
        for _ in range(6):
            ai = model.invoke(messages)
            messages.append(ai)
            if not ai.tool_calls:
                break
            for call in ai.tool_calls:
                out = tools[0].invoke(call)
                result = json.loads(str(out.content))
                statuses.append(result["status"])
                say(f"{call['args']['method']} {API}{call['args']['path']} -> HTTP {result['status']}")
                messages.append(out)
        say(str(messages[-1].content))
    if statuses != [200, 201, 403]:
        print(f"unexpected statuses {statuses}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
