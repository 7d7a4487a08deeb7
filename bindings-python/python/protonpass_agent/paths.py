"""Turn a path a model chose into a URL under a configured API, or refuse it.

The tools that let a model call an API (:mod:`protonpass_agent.langchain`, the
AutoGPT plugin of the example) join the model's path to the API's base URL
with :func:`api_url`. Dot segments, their percent-encoded forms (``%2e``),
encoded slashes and backslashes (``%2f``, ``%5c``) and backslashes are
normalised first, so that a path such as ``/../admin`` or ``/..%2fadmin``
cannot leave the base path, whatever the server decodes before routing; the URL
returned carries the normalised path, so the server sees what was checked.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["api_url"]

_ESCAPED = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_DECODED = {"2e": ".", "2f": "/", "5c": "\\"}


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def api_url(base_url: str, path: str) -> str:
    """The URL of ``path`` (``/...``, with any query string) under ``base_url``.

    Raises :class:`ValueError` for a path that does not start with one ``/``,
    or that leaves the base URL's path once normalised.
    """
    base = urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.hostname:
        raise ValueError("the API's base URL must be an absolute http(s) URL")
    outside = ValueError(
        f"requests may only go to the configured API {base_url}: give a path under it, starting with one '/'"
    )
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise outside
    if any(c in path for c in "\r\n\t ") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        raise outside
    raw, _, _ = path.partition("#")
    raw, sep, query = raw.partition("?")
    decoded = _ESCAPED.sub(lambda m: _DECODED[m.group(1).lower()], raw).replace("\\", "/")
    prefix = _remove_dot_segments(base.path or "/").rstrip("/")
    full = _remove_dot_segments(prefix + decoded)
    if not (full == prefix or full.startswith(prefix + "/")):
        raise outside
    return f"{base.scheme}://{base.netloc}{full}{sep}{query}"
