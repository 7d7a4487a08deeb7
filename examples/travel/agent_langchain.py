"""A travel agent built on LangChain, holding scoped, key-bound access tokens.

The agent asks its owner for ``travel:search``, ``travel:book`` and
``payment:execute:under-500`` on the travel API, then runs a LangChain
tool-calling loop: the model searches flights and hotels, proposes an
itinerary, asks the person to confirm the booking, books and pays. A payment
above the limit is refused by the API (``insufficient_scope``) and the agent
reports it. When the owner revokes the grant, the next call fails with a clear
message. Leaving the ``with`` block revokes the session's tokens.

The model is a scripted chat model (deterministic, no model service). Set
``TRAVEL_AGENT_MODEL`` (e.g. ``openai:gpt-4o-mini``; needs ``pip install
langchain langchain-openai`` and the provider's key) to drive the same tools
with a real model.

Run by ``run.sh``; alone: ``python agent_langchain.py --broker URL --api URL``
(the owner then approves with ``protonpass-broker approve CODE``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from protonpass_agent import DevicePrompt, ProtonPassError, Session, authenticate_with_proton
from protonpass_agent.langchain import api_tools

SCOPES = ["travel:search", "travel:book", "payment:execute:under-500"]
TAG = "[langchain]"


def say(text: str) -> None:
    print(f"{TAG} {text}", flush=True)


class Owner:
    """How the agent reaches its owner: the device prompt, and (in the demo) the
    owner's side of the story, played by ``run.sh`` through a channel directory."""

    def __init__(self, channel: Optional[str]) -> None:
        self.channel = Path(channel) if channel else None

    def _request(self, action: str, arg: str) -> Optional[Path]:
        if self.channel is None:
            return None
        req = self.channel / f"{action}.{arg}.req"
        tmp = self.channel / f".{action}.{arg}.tmp"
        tmp.write_text(arg)
        tmp.rename(req)
        return self.channel / f"{action}.{arg}.done"

    def prompt(self, p: DevicePrompt) -> None:
        url = p.verification_uri_complete or p.verification_uri
        say(f"ASKED   the owner: open {url} and confirm the code {p.user_code}")
        self._request("approve", p.user_code)

    def revoke_me(self, agent: str) -> None:
        """The demo's turn of events: the owner decides to cut this agent off."""
        done = self._request("revoke", agent)
        if done is None:
            say(f"(the owner may now run: protonpass-broker revoke --agent {agent})")
            return
        deadline = time.monotonic() + 30
        while not done.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the owner did not revoke the agent within 30 s")
            time.sleep(0.05)


@tool
def ask_person(question: str) -> str:
    """Ask the person to confirm something before acting (e.g. a booking). Returns their answer."""
    say(f"CONFIRM agent asks the person: {question}")
    answer = "yes" if os.environ.get("TRAVEL_DEMO_INTERACTIVE") != "1" else input("yes/no? ").strip()
    say(f"        the person answers: {answer} (answered automatically in the demo)")
    return json.dumps({"answer": answer})


def _result(msg: BaseMessage) -> dict[str, Any]:
    """A tool result as {status, body(parsed)} (or {error})."""
    try:
        r = json.loads(str(msg.content))
    except ValueError:
        return {"error": str(msg.content)}
    if isinstance(r, dict) and "body" in r:
        with contextlib.suppress(TypeError, ValueError):
            r["body"] = json.loads(r["body"])
    return r if isinstance(r, dict) else {"error": str(msg.content)}


def _call(name: str, n: int, **args: Any) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n}", "type": "tool_call"}])


class ScriptedTravelModel(BaseChatModel):
    """A deterministic chat model that plays a sensible travel agent: it reads the
    conversation (the task and the tool results) and answers with tool calls or
    a final message, as a real tool-calling model would."""

    @property
    def _llm_type(self) -> str:
        return "scripted-travel-agent"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedTravelModel:  # type: ignore[override]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Optional[list[str]] = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
        task = str(messages[last_human].content).lower()
        done = [_result(m) for m in messages[last_human + 1 :] if isinstance(m, ToolMessage)]
        n = len(messages)
        failed = next((r for r in done if r.get("error") or r.get("status", 200) >= 400), None)
        if failed is not None:
            return AIMessage(content=self._explain(failed))
        if "upgrade" in task:
            if not done:
                return _call(
                    "call_api",
                    n,
                    method="POST",
                    path="/travel/payments",
                    body={"amount": 645, "for": "upgrade to Grand Opera"},
                    reason="pay the hotel upgrade the person asked for",
                )
            return AIMessage(content=f"Upgrade paid: {done[-1]['body']}")
        if "check" in task:
            if not done:
                return _call(
                    "call_api", n, method="GET", path="/travel/flights?to=CDG", reason="check for cheaper flights"
                )
            return AIMessage(content="Flights checked; nothing cheaper.")
        # The trip: search, propose, confirm, book, pay.
        if len(done) == 0:
            return _call("call_api", n, method="GET", path="/travel/flights?to=CDG", reason="find flights to Paris")
        if len(done) == 1:
            return _call("call_api", n, method="GET", path="/travel/hotels?city=Paris", reason="find a hotel in Paris")
        flight = min(done[0]["body"]["flights"], key=lambda f: f["price"])
        hotel = min(done[1]["body"]["hotels"], key=lambda h: h["price_per_night"])
        total = flight["price"] + hotel["nights"] * hotel["price_per_night"]
        if len(done) == 2:
            return _call(
                "ask_person",
                n,
                question=(
                    f"Shall I book {flight['flight']} ({flight['price']} EUR) and {hotel['nights']} nights at "
                    f"{hotel['hotel']} ({hotel['price_per_night']} EUR/night), {total} EUR in total?"
                ),
            )
        if len(done) == 3:
            if done[2].get("answer") != "yes":
                return AIMessage(content="The person declined; nothing booked.")
            return _call(
                "call_api",
                n,
                method="POST",
                path="/travel/bookings",
                body={"flight": flight["flight"], "hotel": hotel["hotel"], "total": total},
                reason="book the itinerary the person confirmed",
            )
        if len(done) == 4:
            booking = done[3]["body"]["booking"]
            return _call(
                "call_api",
                n,
                method="POST",
                path="/travel/payments",
                body={"amount": total, "booking": booking},
                reason=f"pay booking {booking}",
            )
        return AIMessage(content=f"Booked {done[3]['body']['booking']} and paid {done[4]['body']['paid']} EUR.")

    @staticmethod
    def _explain(r: dict[str, Any]) -> str:
        if "error" in r:
            return f"I could not continue: {r['error']}"
        body = r.get("body")
        err = body
        if isinstance(err, dict) and err.get("error") == "insufficient_scope":
            return (
                "The API refused the payment (HTTP 403 insufficient_scope): my permission only covers "
                "payments under 500. Please pay it yourself or grant me a higher limit."
            )
        return f"The API refused the call (HTTP {r.get('status')}): {err}"


def chat_model() -> BaseChatModel:
    spec = os.environ.get("TRAVEL_AGENT_MODEL")
    if not spec:
        return ScriptedTravelModel()
    from langchain.chat_models import init_chat_model  # optional: a real model

    return init_chat_model(spec)


def run_task(
    model: Any, tools: dict[str, BaseTool], history: list[BaseMessage], task: str, seen: list[dict[str, Any]]
) -> str:
    """One LangChain tool-calling loop: model -> tool calls -> tool messages -> model ...

    Each API call's outcome is appended to ``seen`` ({path, status, body} or {path, error})."""
    say(f"TASK    {task}")
    history.append(HumanMessage(task))
    for _ in range(12):
        ai = model.invoke(history)
        history.append(ai)
        if not ai.tool_calls:
            say(f"REPORT  {ai.content}")
            return str(ai.content)
        for tc in ai.tool_calls:
            args = tc["args"]
            if tc["name"] == "call_api":
                say(
                    f"CALL    {args['method']} {args['path']}"
                    + (f" {json.dumps(args['body'])}" if args.get("body") else "")
                )
            try:
                out = tools[tc["name"]].invoke(tc)
                content = str(out.content)
            except ProtonPassError as e:
                content = json.dumps({"error": f"{e.code}: {e}"})
            if tc["name"] == "call_api":
                r = _result(ToolMessage(content=content, tool_call_id=tc["id"]))
                seen.append({"path": str(args.get("path", "")), **r})
                status = r.get("status")
                kind = "GOT" if isinstance(status, int) and status < 400 else "REFUSED"
                shown = f"{status} {json.dumps(r.get('body'))}" if status else str(r.get("error"))
                say(f"{kind:<7} -> {shown[:300]}")
            history.append(ToolMessage(content=content, tool_call_id=tc["id"], name=tc["name"]))
    raise RuntimeError("the agent did not finish its task")


def main() -> int:
    p = argparse.ArgumentParser(description="The travel agent (LangChain).")
    p.add_argument("--broker", default=os.environ.get("PROTONPASS_BROKER_URL"))
    p.add_argument("--api", required=True, help="the travel API's base URL (its audience is API/travel)")
    p.add_argument("--name", default="travel-langchain", help="the agent's name")
    p.add_argument("--home", default=os.environ.get("PROTONPASS_HOME"), help="where the grant is stored")
    p.add_argument("--channel", default=os.environ.get("TRAVEL_DEMO_CHANNEL"), help="(demo) the owner's channel")
    a = p.parse_args()
    audience = a.api.rstrip("/") + "/travel"
    owner = Owner(a.channel)

    say(f"ASKING  for {' '.join(SCOPES)} on {audience}")
    # readme:begin python-agent
    session: Session = authenticate_with_proton(
        SCOPES,
        audience,
        broker=a.broker,
        agent_name=a.name,
        store=a.home or "file",
        prompt=owner.prompt,
        reason="plan and book the trip to Paris",
    )
    # readme:end python-agent
    ok = True
    try:
        say(f"GRANTED {' '.join(session.scopes)} (token bound to key {session.thumbprint[:8]}...)")
        # readme:begin python-tools
        tools = {t.name: t for t in [*api_tools(session, a.api.rstrip("/")), ask_person]}
        # readme:end python-tools
        model = chat_model().bind_tools(list(tools.values()))
        history: list[BaseMessage] = [
            SystemMessage(
                "You are a travel agent. Use call_api for the travel API and ask_person before booking or paying."
            )
        ]

        # What the journey must show, judged on what the API answered (so that a real model is held to it too).
        seen: list[dict[str, Any]] = []
        run_task(model, tools, history, "Book me a trip Lisbon to Paris, 12 to 15 December, and pay for it.", seen)
        ok &= any(r["path"].startswith("/travel/payments") and r.get("status") == 200 for r in seen)
        seen.clear()
        run_task(
            model, tools, history, "Please upgrade the hotel to the Grand Opera and pay the difference (645 EUR).", seen
        )
        ok &= any(r.get("status") == 403 and "insufficient_scope" in json.dumps(r.get("body")) for r in seen)

        say("The owner decides to cut the agent off.")
        owner.revoke_me(a.name)
        cut = False
        for _ in range(50):  # the revocation reaches the API through the broker's feed, within milliseconds
            seen.clear()
            run_task(model, tools, history, "Check again whether a cheaper flight exists.", seen)
            cut = any("invalid_grant" in str(r.get("error")) or r.get("status") == 401 for r in seen)
            if cut:
                break
            time.sleep(0.05)
        ok &= cut
    finally:
        say("CLOSING the session: its access tokens are revoked on exit.")
        try:
            session.close()
        except ProtonPassError as e:
            say(f"        (closing: {e.code}: {e})")
    if not ok:
        say("the journey did not go as expected")
        return 1
    say("DONE    searched, confirmed, booked, paid; refused above the limit; cut off after revocation.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
