"""A stand-in for a code host's REST API that has never heard of this project:
it accepts only its own API key (``Authorization: Bearer <key>``), like the
real one. Stdlib only. Prints ``{"url": ...}`` once listening, and appends one
JSON line per request it receives to ``--log`` (method, path, whether the key
was right, and which of the agent's headers reached it), so that run.sh can
check that the key was injected and the agent's token never arrived.

    python upstream.py --key KEY --log calls.jsonl
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMITS = [
    {"sha": "a1b2c3d", "message": "Fix the date parser on leap years"},
    {"sha": "d4e5f6a", "message": "Add a changelog entry"},
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    lock = threading.Lock()
    issues: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any) -> None:
            out = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def _serve(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(n) or b"null") if n else None
            ok = self.headers.get("authorization") == f"Bearer {args.key}"
            with lock, open(args.log, "a") as f:
                f.write(
                    json.dumps(
                        {
                            "method": self.command,
                            "path": self.path,
                            "key_ok": ok,
                            "dpop_header": "dpop" in {k.lower() for k in self.headers},
                            "agent_token": "DPoP " in (self.headers.get("authorization") or ""),
                        }
                    )
                    + "\n"
                )
            if not ok:
                return self._answer(401, {"message": "Bad credentials"})
            parts = self.path.split("?")[0].strip("/").split("/")
            if self.command == "GET" and parts[:1] == ["repos"] and parts[3:] == ["commits"]:
                return self._answer(200, COMMITS)
            if self.command == "POST" and parts[:1] == ["repos"] and parts[3:] == ["issues"]:
                issue = {"number": len(issues) + 1, "title": (body or {}).get("title", "")}
                issues.append(issue)
                return self._answer(201, issue)
            return self._answer(404, {"message": "Not Found"})

        do_GET = do_POST = _serve

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
