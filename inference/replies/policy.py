"""Output policy for drafted replies: what a draft may never contain, with a reason per breach.

Deliberately conservative and language-aware for the four reply languages we ship: a human
approves every draft anyway, the check exists so an unsafe draft never reaches that queue.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from processing.pii import PiiMasker

mask_pii = PiiMasker().mask
"""Mask every PII kind the processing layer knows, with its typed placeholders."""

PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD|ADDRESS|ORDER_ID|ACCOUNT_ID|URL|NAME|IP)\]")
# A promise of money: a refund/credit word near a commitment, in en/es/fr/de.
REFUND_PROMISE = re.compile(
    r"(\b(we|i)('ll| will| are going to| have)\b|\byou('ll| will) (receive|get|be)\b|\bte (devolveremos|reembolsaremos)\b"
    r"|\bnous (vous )?rembourserons\b|\bwir (werden|erstatten)\b)[^.!?]{0,80}"
    r"\b(refund\w*|reimburs\w*|credit\w*|money back|compensat\w*|reembols\w*|rembours\w*|erstatt\w*|gutschrift\w*)",
    re.IGNORECASE,
)
MONEY_AMOUNT = re.compile(
    r"([$€£]\s?\d[\d.,]*|\b\d[\d.,]*\s?(usd|eur|gbp|dollars?|euros?|pounds?)\b|\b\d{1,3}\s?%\s?(off|discount|descuento|de réduction|rabatt))",
    re.IGNORECASE,
)


@dataclass
class PolicyResult:
    ok: bool
    reasons: list[str] = field(default_factory=list)


def check_reply(text: str, refund_allowed: bool, min_chars: int, max_chars: int) -> PolicyResult:
    reasons = []
    if len(text) < min_chars:
        reasons.append(f"too short: {len(text)} characters, minimum {min_chars}")
    if len(text) > max_chars:
        reasons.append(f"too long: {len(text)} characters, maximum {max_chars}")
    if not refund_allowed and REFUND_PROMISE.search(text):
        reasons.append("promises a refund or credit the playbook does not allow")
    if not refund_allowed and MONEY_AMOUNT.search(text):
        reasons.append("names an amount of money or a discount the playbook does not allow")
    if PLACEHOLDER.search(text):
        reasons.append("echoes a personal-data placeholder")
    if mask_pii(text) != text:
        reasons.append("contains personal data")
    return PolicyResult(ok=not reasons, reasons=reasons)
