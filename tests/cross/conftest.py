"""The cross-language suite's fixtures: `broker` comes from shared_fixtures.py."""

pytest_plugins = ["shared_fixtures"]
