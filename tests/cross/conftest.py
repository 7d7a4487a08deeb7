"""The cross-language suite's fixtures: `broker` comes from procs.py."""

pytest_plugins = ["procs"]
