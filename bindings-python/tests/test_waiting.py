"""Waiting for the owner's approval ends at once, and withdraws the request at
the broker, when the prompt raises, on Ctrl-C and when the task is cancelled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import protonpass_agent as pa
from conftest import Api, Authenticate, Broker


class PromptBroke(Exception):
    pass


def waiting(broker: Broker, agent_name: str) -> list[dict[str, object]]:
    return [w for w in broker.cli_json("pending") if w["agent"] == agent_name]


def wait_until_withdrawn(broker: Broker, agent_name: str, within: float = 5.0) -> None:
    end = time.monotonic() + within
    while waiting(broker, agent_name):
        assert time.monotonic() < end, "the request is still waiting at the broker"
        time.sleep(0.1)


def test_a_prompt_that_raises_ends_the_wait_with_its_exception(broker: Broker, api: Api, agent_name: str) -> None:
    raised_at: list[float] = []

    def prompt(p: pa.DevicePrompt) -> None:
        raised_at.append(time.monotonic())
        raise PromptBroke("no terminal to show the code on")

    with pytest.raises(PromptBroke, match="no terminal"):
        pa.authenticate_with_proton(
            ["travel:search"], api.audience, broker=broker.issuer, agent_name=agent_name, store="memory", prompt=prompt
        )
    assert time.monotonic() - raised_at[0] < 1.0
    assert waiting(broker, agent_name) == [], "the request was withdrawn"


def test_a_prompt_that_raises_ends_the_async_wait(broker: Broker, api: Api, agent_name: str) -> None:
    def prompt(p: pa.DevicePrompt) -> None:
        raise PromptBroke("boom")

    async def main() -> None:
        await pa.authenticate_with_proton_async(
            ["travel:search"], api.audience, broker=broker.issuer, agent_name=agent_name, store="memory", prompt=prompt
        )

    with pytest.raises(PromptBroke):
        asyncio.run(main())
    assert waiting(broker, agent_name) == []


def test_cancelling_the_task_withdraws_the_request(
    broker: Broker, api: Api, agent_name: str, authenticate_async: Authenticate
) -> None:
    shown = threading.Event()

    async def main() -> float:
        task = asyncio.ensure_future(
            authenticate_async(
                ["travel:search"],
                store="memory",
                prompt=lambda p: shown.set(),
            )
        )
        while not shown.is_set():
            await asyncio.sleep(0.05)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0

    assert asyncio.run(main()) < 1.0
    wait_until_withdrawn(broker, agent_name)


def test_ctrl_c_ends_the_wait_with_keyboard_interrupt(
    broker: Broker, api: Api, agent_name: str, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            import protonpass_agent as pa
            def prompt(p):
                print("PROMPT", flush=True)
            try:
                pa.authenticate_with_proton(["travel:search"], {api.audience!r}, broker={broker.issuer!r},
                                            agent_name={agent_name!r}, store="memory", prompt=prompt)
            except KeyboardInterrupt:
                print("INTERRUPTED", flush=True)
                sys.exit(3)
            """
        )
    )
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "PROMPT"
        assert len(waiting(broker, agent_name)) == 1
        t0 = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        assert child.wait(10) == 3
        assert time.monotonic() - t0 < 2.0
        assert child.stdout.read().strip() == "INTERRUPTED"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    # The interrupted agent withdrew its request before it exited.
    assert waiting(broker, agent_name) == []
