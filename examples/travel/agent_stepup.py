"""Step-up in the travel demo: an agent whose token pays at most 100 EUR a
call, from a budget of 600 EUR a day, books a 450 EUR flight.

The API refuses it (403 ``insufficient_scope``); the session asks the owner
for exactly that payment (``session.step_up`` with the API's challenge), the
owner approves it (``run.sh`` plays them: ``protonpass-broker stepup
approve``), and the call is sent again once with the one-time token, which
pays once. The same payment sent again with the same one-time token (a fresh
DPoP proof) is refused with 401 ``invalid_token``: the API's verifier redeemed
the token at the broker on its first use. Without asking the owner, the limit
stands (403 ``insufficient_scope``); small payments go through until the
day's budget is spent, and the next one is refused with ``budget_exceeded``.

Run by ``run.sh``: ``python agent_stepup.py --broker URL --api URL --code CODE --home DIR``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional

import httpx
import protonpass_agent as pa


def say(text: str) -> None:
    print(f"[agent]     {text}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--code", required=True, help="the enrollment code of the owner's grant")
    p.add_argument("--home", required=True)
    p.add_argument("--name", default="travel-stepup")
    p.add_argument("--channel", default=os.environ.get("TRAVEL_DEMO_CHANNEL"))
    a = p.parse_args()
    chan = Path(a.channel) if a.channel else None

    def prompt(d: pa.DevicePrompt) -> None:
        say(f"asked the owner to approve this one payment at {d.verification_uri}")
        if chan is not None:
            (chan / f".stepup.{a.name}.tmp").write_text("")
            os.replace(chan / f".stepup.{a.name}.tmp", chan / f"stepup.{a.name}.req")

    audience = f"{a.api}/travel"
    with pa.authenticate_with_proton(
        ["payment:execute:under-100"],
        audience,
        broker=a.broker,
        agent_name=a.name,
        store=a.home,
        enrollment_code=a.code,
        prompt=prompt,
        allow_step_up=True,
    ) as s:
        ok = True

        def charge(amount: str, key: str, one_time: Optional[pa.OneTimeToken] = None) -> httpx.Response:
            url = f"{audience}/charges?amount={amount}&key={key}"
            if one_time is None:
                r = httpx.post(url, auth=s.httpx_auth)
            else:
                # The one-time token, with a fresh DPoP proof for this call.
                r = httpx.post(url, headers=s.one_time_headers(one_time, "POST", url))
            if r.status_code == 200:
                said = f"paid, {r.json()['remaining']} EUR left today"
            else:
                said = r.headers.get("www-authenticate", "").split('error="')[-1].split('"')[0]
            say(f"pay {amount} EUR ({key}{', one-time token' if one_time else ''}): HTTP {r.status_code} {said}")
            return r

        say("books the flight: 450 EUR, above the 100 EUR a call its token allows")
        t = time.monotonic()
        r = charge("450", "flight-1")
        ok &= r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
        # The challenge of a per-call limit names the scope and the amount
        # but no currency: the agent says the currency and to whom it pays.
        approved = s.step_up(
            f"{audience}/charges",
            r.headers["www-authenticate"],
            amount="450",
            currency="EUR",
            payee="Air Example",
            binding_message="Flight LIS-CDG, 12 December",
        )
        r = charge("450", "flight-1", approved)
        ok &= r.status_code == 200 and r.json()["remaining"] == "150.00"
        say(f"(the owner approved it; paid once, {time.monotonic() - t:.1f} s)")
        say("the same payment again with the same one-time token: refused, the token is spent")
        r = charge("450", "flight-1", approved)
        ok &= r.status_code == 401 and r.headers["www-authenticate"].startswith('DPoP error="invalid_token"')
        say("and without asking the owner: refused (the approval was for one payment)")
        r = charge("450", "flight-2")
        ok &= r.status_code == 403 and "insufficient_scope" in r.headers["www-authenticate"]
        say("small payments within its limit, until the day's budget is spent")
        for i, amount in enumerate(("80", "70")):
            ok &= charge(amount, f"taxi-{i}").status_code == 200
        r = charge("20", "taxi-3")
        ok &= r.status_code == 403 and "budget_exceeded" in r.headers["www-authenticate"]
    say("step-up story complete" if ok else "step-up story FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
