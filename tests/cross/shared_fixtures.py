"""The fixtures the cross-language and MCP suites share, loaded by their
conftest as a plugin (``pytest_plugins``), never imported by a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from procs import Broker


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    """A broker for the tests of one module."""
    b = Broker()
    yield b
    b.close()
