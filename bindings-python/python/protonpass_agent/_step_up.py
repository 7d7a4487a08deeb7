"""What the HTTP helpers' "step up once" needs: the agent's words for the
owner, and whether a response is a refusal that a step-up can answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._protocols import SigningSession, StepUpDetails

#: The ``403`` challenges a one-time authorization can answer.
STEP_UP_ERRORS = ("insufficient_scope", "budget_exceeded")


@dataclass(frozen=True)
class StepUp:
    """The payment's payee (and amount and currency when the challenge does
    not name them), and the reason shown to the owner."""

    payee: Optional[str]
    amount: Optional[str]
    currency: Optional[str]
    binding_message: Optional[str]

    def args(self) -> StepUpDetails:
        return {
            "payee": self.payee,
            "amount": self.amount,
            "currency": self.currency,
            "binding_message": self.binding_message,
        }


def challenge_to_step_up(session: SigningSession, step_up: Optional[StepUp], response: Any) -> Optional[str]:
    """The ``WWW-Authenticate`` challenge to step up for, or None: only a
    ``403`` naming one of :data:`STEP_UP_ERRORS`, with step-up asked for on
    this auth and allowed on the session."""
    if step_up is None or not session.allows_step_up:
        return None
    status = getattr(response, "status_code", None)
    challenge = response.headers.get("www-authenticate") or ""
    if status != 403 or not any(f'error="{e}"' in challenge for e in STEP_UP_ERRORS):
        return None
    return str(challenge)
