"""Spam and gibberish rules. Each rule has a name (reported per rule) and a threshold in config.

Rules look at the cleaned (whitespace-collapsed), PII-masked text, so links are counted as [URL] placeholders.
The first rule that fires is the reason; order is from most to least specific.
"""
from __future__ import annotations

import re
from typing import Optional

from processing.config import ProcessingConfig
from processing.pii import URL

# Promotion by the writer, not a customer mentioning a promotion ("the discount code didn't
# apply" is a genuine complaint): phrases that sell or lure.
PROMO_RE = re.compile(
    r"\b(?:buy now|click here|click the link|free money|limited (?:time )?offer|use my (?:code|link)|"
    r"visit my|follow me|dm me|earn \$?\d+|work from home|make money|crypto|bitcoin|casino|"
    r"viagra|whatsapp|telegram|subscribe to my|check out my (?:channel|page|store|profile))\b",
    re.IGNORECASE,
)
# Substrings every PROMO_RE alternative contains: a C-speed gate before the regex.
PROMO_TRIGGERS = ("buy now", "click", "free money", "limited", "use my", "visit my", "follow me", "dm me", "earn",
                  "work from home", "make money", "crypto", "bitcoin", "casino", "viagra", "whatsapp", "telegram",
                  "subscribe to my", "check out my")
_ALL_BYTES = bytes(range(128))
_NOT_LATIN_LETTER = bytes(b for b in _ALL_BYTES if not chr(b).isalpha())
_NOT_VOWEL = bytes(b for b in _ALL_BYTES if chr(b) not in "aeiouyAEIOUY")
_LETTER_RE = re.compile(r"[^\W\d_]")
# A whitespace-separated token with no letter or digit ("!!!", "$$$", "***").
_NON_WORD_TOKEN_RE = re.compile(r"(?<!\S)[^\w\s]+(?!\S)")


class SpamFilter:
    """`reason(text)` -> name of the first rule that fires, or None for a genuine text."""

    RULES = ("promo_pattern", "too_many_links", "repeated_characters", "non_word_ratio", "low_vowel_ratio")

    def __init__(self, config: Optional[ProcessingConfig] = None):
        self.config = config or ProcessingConfig()
        # "(.)\1{n}" then a letter check is several times faster than a letter class in the group.
        self._repeated = re.compile(r"(.)\1{%d,}" % (self.config.spam_max_repeated_chars - 1))

    def reason(self, text: str) -> Optional[str]:
        cfg = self.config
        lower = text.lower()
        if any(map(lower.__contains__, PROMO_TRIGGERS)) and PROMO_RE.search(text):
            return "promo_pattern"
        if text.count(URL) >= cfg.spam_max_urls:
            return "too_many_links"
        for run in self._repeated.finditer(text):
            if run.group(1).isalpha():
                return "repeated_characters"
        ascii_bytes = text.encode("ascii", "ignore")
        latin = len(ascii_bytes.translate(None, _NOT_LATIN_LETTER))
        letters = latin if len(ascii_bytes) == len(text) else len(_LETTER_RE.findall(text))
        if letters < cfg.spam_min_letters_for_ratio_rules:
            return None
        tokens = text.count(" ") + 1
        non_words = len(_NON_WORD_TOKEN_RE.findall(text))
        if non_words / tokens > cfg.spam_max_non_word_ratio:
            return "non_word_ratio"
        if latin >= cfg.spam_min_letters_for_ratio_rules:
            vowels = len(ascii_bytes.translate(None, _NOT_VOWEL))
            if vowels / latin < cfg.spam_min_vowel_ratio:
                return "low_vowel_ratio"
        return None
