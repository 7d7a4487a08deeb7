"""The broker's answer to a spend or a refund: :class:`Spend`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional


def _decimal_plain(value: Decimal, where: str = "amount") -> str:
    """A finite ``Decimal`` as plain digits (``1E+2`` as ``100``). Its size is
    checked first: written out, ``Decimal("1E+999999999")`` would take a
    gigabyte, and no amount has more than 40 digits."""
    if not value.is_finite():
        raise ValueError(f"{where} must be a finite decimal, not {value!r}")
    t = value.as_tuple()
    exp = int(t.exponent)
    if len(t.digits) + max(exp, 0) > 40 or exp < -40:
        raise ValueError(f"{where} has more digits than any amount")
    return format(value, "f")


@dataclass(frozen=True)
class Spend:
    """The broker's answer to a spend or a refund: amounts are exact decimals.

    ``limit``, ``remaining``, ``period`` and ``period_ends_at`` are ``None``
    when the owner set no budget on the scope.
    """

    grant_id: str
    scope: str
    amount: Decimal
    currency: str
    idempotency_key: str
    refunded: bool
    limit: Optional[Decimal]
    remaining: Optional[Decimal]
    period: Optional[str]
    period_ends_at: Optional[int]

    @classmethod
    def _from_json(cls, text: str) -> Spend:
        d = json.loads(text)
        return cls(
            grant_id=d["grant_id"],
            scope=d["scope"],
            amount=Decimal(d["amount"]),
            currency=d["currency"],
            idempotency_key=d["idempotency_key"],
            refunded=bool(d.get("refunded", False)),
            limit=_dec(d.get("limit")),
            remaining=_dec(d.get("remaining")),
            period=d.get("period"),
            period_ends_at=d.get("period_ends_at"),
        )


def _dec(v: Optional[str]) -> Optional[Decimal]:
    return None if v is None else Decimal(v)
