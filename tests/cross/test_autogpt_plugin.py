"""The AutoGPT plugin adapter (examples/travel/autogpt_plugin), driven the way
AutoGPT 0.4 drives plugins: the plugin folder zipped into plugins/, each
``__init__.py`` in the zip loaded with ``zipimporter``, every ABC subclass but the
template instantiated, ``post_prompt`` given the prompt generator, and a command
chosen by the model executed by name with its arguments (between the plugins'
``pre_command`` and ``post_command`` hooks). Against the real broker and the
travel API (Python verifier)."""

from __future__ import annotations

import json
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional
from zipimport import zipimporter

import pytest

from procs import ROOT, Broker, Proc

PLUGIN_DIR = ROOT / "examples/travel/autogpt_plugin"


class PromptGenerator:
    """AutoGPT 0.4's PromptGenerator, as far as plugins use it."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def add_command(
        self,
        command_label: str,
        command_name: str,
        args: Optional[dict[str, str]] = None,
        function: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.commands.append({"label": command_label, "name": command_name, "args": args or {}, "function": function})


def scan_plugins(plugins_dir: Path) -> list[Any]:
    """AutoGPT 0.4's scan_plugins for zipped plugins (allowlist: every plugin)."""
    loaded = []
    for zpath in sorted(plugins_dir.glob("*.zip")):
        with zipfile.ZipFile(zpath) as z:
            modules = [n for n in z.namelist() if n.endswith("__init__.py") and not n.startswith("__MACOSX")]
        for module in modules:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                m = zipimporter(str(zpath)).load_module(str(Path(module).parent))
            for key in dir(m):
                if key.startswith("__"):
                    continue
                a = getattr(m, key)
                if "_abc_impl" in dir(a) and a.__name__ != "AutoGPTPluginTemplate":
                    loaded.append(a())
    return loaded


def execute_command(plugins: list[Any], prompt: PromptGenerator, name: str, arguments: dict[str, Any]) -> str:
    """AutoGPT 0.4's command dispatch with the plugins' pre/post command hooks."""
    for p in plugins:
        if p.can_handle_pre_command():
            name, arguments = p.pre_command(name, arguments)
    for c in prompt.commands:
        if name == c["label"].lower() or name == c["name"].lower():
            result = str(c["function"](**arguments))
            break
    else:
        return f"Unknown command '{name}'"
    for p in plugins:
        if p.can_handle_post_command():
            result = p.post_command(name, result)
    return result


@pytest.fixture
def autogpt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    broker = Broker()
    api = Proc([sys.executable, str(ROOT / "examples/travel/api.py"), "--issuer", broker.issuer])
    try:
        audience = api.first["audience"]
        code = broker.enrollment_code("autogpt-travel", "travel:search payment:execute:under-500", audience)
        for k, v in {
            "PROTONPASS_BROKER_URL": broker.issuer,
            "PROTONPASS_API_URL": api.first["url"],
            "PROTONPASS_AUDIENCE": audience,
            "PROTONPASS_SCOPES": "travel:search payment:execute:under-500",
            "PROTONPASS_AGENT_NAME": "autogpt-travel",
            "PROTONPASS_ENROLLMENT_CODE": code,
            "PROTONPASS_HOME": str(tmp_path / "home"),
        }.items():
            monkeypatch.setenv(k, v)
        plugins_dir = tmp_path / "plugins"
        plugins_dir.mkdir()
        with zipfile.ZipFile(plugins_dir / "ProtonPassPlugin.zip", "w") as z:
            for f in (PLUGIN_DIR / "protonpass_autogpt").rglob("*.py"):
                z.write(f, f.relative_to(PLUGIN_DIR).as_posix())
        plugins = scan_plugins(plugins_dir)
        prompt = PromptGenerator()
        for p in plugins:
            if p.can_handle_post_prompt():
                prompt = p.post_prompt(prompt)

        def request(arguments: dict[str, Any]) -> str:
            """What the plugin answers the model's ``authenticated_request``."""
            return execute_command(plugins, prompt, "authenticated_request", arguments)

        yield {"broker": broker, "plugins": plugins, "prompt": prompt, "request": request}
        for p in plugins:
            p.close()
    finally:
        api.stop()
        broker.close()


def test_the_plugin_registers_and_runs_an_authenticated_request(autogpt: dict[str, Any]) -> None:
    plugins, prompt, request = autogpt["plugins"], autogpt["prompt"], autogpt["request"]
    assert [type(p).__name__ for p in plugins] == ["ProtonPassPlugin"]
    assert [c["name"] for c in prompt.commands] == ["authenticated_request"]
    assert set(prompt.commands[0]["args"]) == {"method", "path", "body", "reason"}

    out = request({"method": "GET", "path": "/travel/flights?to=CDG", "reason": "find flights"})
    r = json.loads(out)
    assert r["status"] == 200, r
    body = json.loads(r["body"])
    assert body["by"] == {"owner": "default", "agent": "autogpt-travel", "reason": "find flights"}
    assert "eyJ" not in out  # no token in what the model sees

    # Within the limit, then above it: the API refuses with insufficient_scope.
    ok = json.loads(request({"method": "POST", "path": "/travel/payments", "body": '{"amount": 120}'}))
    assert ok["status"] == 200, ok
    no = json.loads(request({"method": "POST", "path": "/travel/payments", "body": '{"amount": 900}'}))
    assert no["status"] == 403 and "insufficient_scope" in no["body"], no

    # Only the configured API, and no other scopes.
    out = request({"method": "GET", "path": "//evil.example/x"})
    assert out.startswith("Error:"), out
    nb = json.loads(request({"method": "POST", "path": "/travel/bookings", "body": "{}"}))
    assert nb["status"] == 403, nb


def test_a_revoked_plugin_reports_it(autogpt: dict[str, Any]) -> None:
    request, broker = autogpt["request"], autogpt["broker"]
    args = {"method": "GET", "path": "/travel/hotels"}
    assert json.loads(request(args))["status"] == 200
    broker.cli("revoke", "--agent", "autogpt-travel")
    out = ""
    for _ in range(100):
        out = request(args)
        if not out.startswith('{"status": 200'):
            break
    assert out.startswith("Error: invalid_grant"), out


ESCAPES = [
    "/../admin",
    "/..",
    "/%2e%2e/admin",
    "/%2E%2E/admin",
    "/..%2fadmin",
    "/..%2Fadmin",
    "/..%5cadmin",
    "/..\\admin",
    "/x/..%2f..%2fadmin",
    "/%2e%2e%5cadmin",
    "/./../admin",
]


def test_paths_cannot_leave_the_configured_base_path(autogpt: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    request = autogpt["request"]
    monkeypatch.setenv("PROTONPASS_API_URL", os.environ["PROTONPASS_API_URL"] + "/travel")
    ok = request({"method": "GET", "path": "/flights?to=CDG"})
    assert json.loads(ok)["status"] == 200, ok
    # Dot segments that stay under the base path are resolved, not refused.
    ok = request({"method": "GET", "path": "/x/../flights"})
    assert json.loads(ok)["status"] == 200, ok
    for path in ESCAPES:
        out = request({"method": "GET", "path": path})
        assert out.startswith("Error: requests may only go to the configured API"), (path, out)
