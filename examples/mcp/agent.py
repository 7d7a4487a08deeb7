"""A travel agent reaching the travel MCP server through the official ``mcp`` client.

It authenticates with the broker (the stored grant, an enrollment code in
``PROTONPASS_ENROLLMENT_CODE``, or the device flow); without ``--broker`` (and
``PROTONPASS_BROKER_URL``) it finds the broker from the server's RFC 9728
metadata. It connects to the MCP server
over Streamable HTTP with the session's DPoP auth (``session.httpx_auth`` on
``mcp`` 1.x, ``session.httpx2_auth`` on ``mcp`` 2.x), lists the tools, searches,
books, pays within its limit, and is refused (``insufficient_scope``) a payment
beyond it. With ``--langchain`` (``mcp`` 1.x) the tools come from
``langchain_mcp_adapters.tools.load_mcp_tools`` in one call and are invoked as
LangChain tools. With ``--until-revoked`` it then keeps calling until the owner
revokes its grant, and reports how the MCP session was cut off.

Each step is one JSON line on stdout: ``{"event": ..., ...}``.

Run: ``python agent.py --server http://127.0.0.1:PORT/mcp [--broker URL] [--langchain] [--until-revoked]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from importlib.metadata import version
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from protonpass_agent import ProtonPassError, Session, authenticate_with_proton_async

SCOPES = ["travel:search", "travel:book", "payment:execute:under-500"]

MCP2 = int(version("mcp").split(".")[0]) >= 2
if MCP2:  # mcp 2.x builds its transport on httpx2
    import httpx2 as http
else:  # mcp 1.x, on httpx
    import httpx as http  # type: ignore[no-redef]


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def leaves(e: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    inner = getattr(e, "exceptions", None)  # an ExceptionGroup (anyio task groups)
    if isinstance(inner, tuple):
        return [x for sub in inner for x in leaves(sub)]
    return [e]


def auth_of(session: Session) -> Any:
    return session.httpx2_auth if MCP2 else session.httpx_auth


def text_of(result: Any) -> tuple[bool, str]:
    """(is_error, text) of a CallToolResult, in either SDK line."""
    is_error = bool(getattr(result, "is_error", None) if MCP2 else result.isError)
    return is_error, "".join(getattr(c, "text", "") for c in result.content)


class Tools:
    """Call tools by name: straight through the MCP session, or as LangChain tools."""

    def __init__(self, mcp: ClientSession, langchain: list[Any] | None) -> None:
        self.mcp = mcp
        self.lc = {t.name: t for t in langchain} if langchain is not None else None

    async def call(self, name: str, **args: Any) -> tuple[bool, str]:
        if self.lc is None:
            return text_of(await self.mcp.call_tool(name, args))
        from langchain_core.messages import ToolMessage

        # Invoked as a model's tool call, so that a refusal comes back as the
        # message the model would read rather than as an exception.
        msg = await self.lc[name].ainvoke({"type": "tool_call", "id": "1", "name": name, "args": args})
        assert isinstance(msg, ToolMessage)
        content = msg.content
        text = (
            content
            if isinstance(content, str)
            else "".join(getattr(c, "text", None) or c.get("text", "") for c in content)
        )
        return msg.status == "error", text


async def journey(tools: Tools) -> None:
    found = json.loads((await tools.call("search_flights", to="CDG"))[1])
    cheapest = min(found["flights"], key=lambda f: f["price"])
    say("searched", flights=[f["flight"] for f in found["flights"]], by=found["by"])
    err, text = await tools.call("book_flight", flight=cheapest["flight"])
    booking = json.loads(text)
    say("booked", booking=booking["booking"], flight=cheapest["flight"], error=err)
    err, text = await tools.call("pay", booking=booking["booking"], amount=900)
    say("pay_refused" if err else "paid", amount=900, error=err, text=text)
    err, text = await tools.call("pay", booking=booking["booking"], amount=cheapest["price"])
    say("paid" if not err else "pay_refused", amount=cheapest["price"], error=err, text=text)


async def until_revoked(tools: Tools, deadline: float) -> None:
    """Call until the grant is revoked: the SDK then ends the session with the ``InvalidGrant`` the auth raised."""
    say("waiting_for_revocation")
    while time.monotonic() < deadline:
        err, text = await tools.call("search_flights", to="CDG")
        if err:
            say("cut_off", errors=[text[:300]])
            return
        await asyncio.sleep(0.2)
    say("still_connected")


async def main(a: argparse.Namespace) -> int:
    session = await authenticate_with_proton_async(SCOPES, a.server, broker=a.broker, store=a.store)
    say("authenticated", scopes=session.scopes, line="mcp2" if MCP2 else "mcp1")
    try:
        # readme:begin mcp-client
        async with (
            http.AsyncClient(auth=auth_of(session), timeout=30) as client,
            streamable_http_client(a.server, http_client=client) as streams,
            ClientSession(streams[0], streams[1]) as mcp,
        ):
            await mcp.initialize()
            # readme:end mcp-client
            langchain = None
            if a.langchain:
                from langchain_mcp_adapters.tools import load_mcp_tools

                langchain = await load_mcp_tools(mcp)
                say("tools", names=[t.name for t in langchain], via="langchain")
            else:
                listed = await mcp.list_tools()
                say("tools", names=[t.name for t in listed.tools], via="mcp")
            tools = Tools(mcp, langchain)
            await journey(tools)
            if a.until_revoked:
                await until_revoked(tools, time.monotonic() + 20)
    except Exception as e:  # noqa: BLE001 - the SDK ends a cut-off session with a task group error
        if not a.until_revoked:
            raise
        say("cut_off", errors=[f"{type(x).__name__}: {x}"[:300] for x in leaves(e)])
    finally:
        # The blocking close: the process ends right after, and a native future
        # still winding down on the runtime's threads then can race the
        # interpreter's exit.
        with contextlib.suppress(ProtonPassError):  # revoked already
            session.close()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", help="the broker (default PROTONPASS_BROKER_URL, else found from the server)")
    p.add_argument("--server", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8000/mcp")
    p.add_argument("--store", default="file", help="file (PROTONPASS_HOME), memory, or a directory")
    p.add_argument("--langchain", action="store_true", help="load the tools with langchain-mcp-adapters")
    p.add_argument("--until-revoked", action="store_true", help="keep calling until the grant is revoked")
    sys.exit(asyncio.run(main(p.parse_args())))
