"""PII masking with typed placeholders, and pseudonyms for identifier fields.

Rules run in a fixed order (the most specific first, so an e-mail's domain is not taken for a
URL and a card number is not taken for a phone). Pure functions: Spark can call them.

Placeholders: [EMAIL] [URL] [CARD] (Luhn-valid 13-19 digit numbers only) [ORDER_ID]
[ACCOUNT_ID] [PHONE] [ADDRESS] [NAME].

Known limits (regular expressions, not a NER model):
- street addresses need a house number and a capitalised or ordinal street name followed by
  a street type ("12 Elm Street", "5 3rd Ave", "PO Box 12"); "the house by the church" is
  not found;
- person names are only found in context: after "my name is" / "this is" / greetings
  ("Hi Anna") and before or after sign-offs ("Thanks, Anna Smith", "- Anna" at the end);
  a name in the middle of a sentence ("Anna at the desk was rude") is not masked;
- phone numbers need 7-15 digits in one run of digits, spaces, dots, dashes and brackets;
- a digit-only run of `min_account_digits` or more that is neither phone nor card is masked
  as [ACCOUNT_ID] (conservative: it may be a tracking or account number).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Optional

from processing.config import ProcessingConfig

EMAIL = "[EMAIL]"
URL = "[URL]"
CARD = "[CARD]"
ORDER_ID = "[ORDER_ID]"
ACCOUNT_ID = "[ACCOUNT_ID]"
PHONE = "[PHONE]"
ADDRESS = "[ADDRESS]"
NAME = "[NAME]"
PLACEHOLDERS = (EMAIL, URL, CARD, ORDER_ID, ACCOUNT_ID, PHONE, ADDRESS, NAME)

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Bare domains (no scheme, no www.) only with top-level domains that are not English words:
# reviews often lack the space after a full stop ("well made.it runs small").
_TLDS = r"com|net|org|io|shop|store|info|biz|co\.uk|com\.au"
_URL_RE = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'\[\]]+"
    rf"|\b(?:[A-Za-z0-9-]+\.)+(?:{_TLDS})\b(?:/[^\s<>\"'\[\]]*)?",
    re.IGNORECASE,
)
_TRAILING_PUNCT = ".,;:!?)]}'\""
_CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_ID_BODY = r"(?P<id>#?[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)"
_ID_LEAD = r"\s*(?i:id|number|no|num|nr|#|ref|reference)?\.?\s*(?i:is|was|:|#|=)?\s*"
_ORDER_CONTEXT_RE = re.compile(
    r"\b(?i:order|ord|purchase|invoice|confirmation|tracking|shipment|rma|return)" + _ID_LEAD + _ID_BODY
)
_ORDER_PATTERN_RE = re.compile(r"(?<![\w#])(?:(?:ORD|ORDER|PO|INV|SO|RMA)-?\d{4,}|#\d{5,})\b")
_ACCOUNT_CONTEXT_RE = re.compile(
    r"\b(?i:account|acct|customer|member|membership|loyalty|client|user)" + _ID_LEAD + _ID_BODY
)
_PHONE_RE = re.compile(r"(?<![\w+'\"./$])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d(?:[ .-]?\d){5,}(?!\w)")
_ISO_DATE_RE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}")
_STREET_TYPES = (r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl"
                 r"|terrace|ter|circle|cir|highway|hwy|parkway|pkwy|square|sq|close|crescent")
_ADDRESS_RE = re.compile(
    r"\b\d{1,6}[A-Za-z]?,?\s+(?:(?:[A-Z][A-Za-z'.-]*|\d+(?:st|nd|rd|th))\s+){1,4}"
    rf"(?i:{_STREET_TYPES})\b\.?"
    r"(?:,?\s*(?i:apt|apartment|suite|ste|unit|flat|#)\.?\s*#?[A-Za-z0-9-]+)?"
    r"(?:,\s*[A-Z][A-Za-z .'-]+,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"
    r"|\b(?i:p\.?\s?o\.?\s+box)\s+\d+"
)
_DIGIT_RUN_RE = re.compile(r"(?<!\w)\d{6,}(?!\w)")
_NAME = r"(?P<name>[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?(?:\s+[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?)?)"
# Anchored (matched only where one of _NAME_INTRO_WORDS starts a word), not searched: a
# case-insensitive alternation scanned over every position of a long review is the costliest rule.
_NAME_INTRO_RE = re.compile(r"(?i:my name is|my name's|name is|name:|this is|signed|hi|hello|dear|hey)[,:]?\s+" + _NAME)
_NAME_SIGNOFF_RE = re.compile(
    r"\b(?i:thanks|thank you|regards|best regards|kind regards|cheers|sincerely|best|warmly|yours truly)"
    r"\s*[,!.:-]+\s*" + _NAME + r"\b"
)
_NAME_DASH_END_RE = re.compile(r"(?:^|\s)[-\u2013\u2014~]\s*" + _NAME + r"\s*[.!]?\s*$")
# Capitalised words that follow a greeting or "this is" but are not names.
_NOT_NAMES = frozenset("""
team support there all everyone sir madam customer service again so very the a an i it this that for guys
folks hello thanks amazon great good bad awesome terrible horrible amazing perfect just not my your our
what why how when where who is was absolutely really exactly definitely probably also still
""".split())
_HAS_DIGIT_RE = re.compile(r"\d")
_DIGIT_GROUP_RE = re.compile(r"\d+")
_DELETE_DIGITS = str.maketrans("", "", "0123456789")
_TLD_HINT_RE = re.compile(rf"\.(?:{_TLDS})\b", re.IGNORECASE)
# Lower-case substrings that must be present for a context rule to possibly match.
_ORDER_WORDS = ("ord", "purchase", "invoice", "confirmation", "tracking", "shipment", "rma", "return")
_ACCOUNT_WORDS = ("account", "acct", "customer", "member", "loyalty", "client", "user")
_NAME_INTRO_WORDS = ("my name", "name is", "name:", "this is", "signed", "hi", "hello", "dear", "hey")
_SIGNOFF_WORDS = ("thank", "regards", "cheers", "sincerely", "best", "warmly", "yours")
_DASHES = ("-", "\u2013", "\u2014", "~")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _phone_shaped(found: str, digit_count: int) -> bool:
    """Digit groups like a phone number: "555-123-4567", "+44 20 7946 0958", "(555) 1234567".

    Rejects measurements such as "5'2 115-120" (groups 1-3-3) that the loose pattern matches.
    """
    if found.startswith("+") or "(" in found:
        return True
    groups = [len(g) for g in _DIGIT_GROUP_RE.findall(found)]
    if len(groups) == 1:
        return digit_count >= 10
    if groups[-1] < 3 or min(groups[1:]) < 2:
        return False
    return digit_count >= 10 or groups[-2:] == [3, 4]


def _find_all(text: str, word: str) -> list[int]:
    found, at = [], text.find(word)
    while at != -1:
        found.append(at)
        at = text.find(word, at + 1)
    return found


def _only_digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class PiiMasker:
    """Masks every PII kind in a text and counts what it masked."""

    def __init__(self, config: Optional[ProcessingConfig] = None):
        self.config = config or ProcessingConfig()

    def mask(self, text: str, counts: Optional[Counter] = None) -> str:
        """Return text with every PII kind replaced by its placeholder; add to counts per kind."""
        counts = counts if counts is not None else Counter()
        # Cheap C-speed gates first: most feedback has no PII, and each regex scan costs
        # tens of microseconds on a long review (`any(map(s.__contains__, words))` runs no Python per word).
        if "@" in text:
            text = _EMAIL_RE.sub(lambda m: self._count(counts, EMAIL), text)
        if ("://" in text or "www." in text or _TLD_HINT_RE.search(text)):
            text = _URL_RE.sub(lambda m: self._url(m, counts), text)
        lower = text.lower()
        digits = len(text) - len(text.translate(_DELETE_DIGITS))
        if digits:
            if digits >= 13:
                text = self._mask_cards(text, counts)
            if any(map(lower.__contains__, _ORDER_WORDS)):
                text = _ORDER_CONTEXT_RE.sub(lambda m: self._id_group(m, counts, ORDER_ID), text)
            if digits >= 4:
                text = _ORDER_PATTERN_RE.sub(lambda m: self._count(counts, ORDER_ID), text)
            if any(map(lower.__contains__, _ACCOUNT_WORDS)):
                text = _ACCOUNT_CONTEXT_RE.sub(lambda m: self._id_group(m, counts, ACCOUNT_ID), text)
            if digits >= self.config.min_phone_digits:
                text = _PHONE_RE.sub(lambda m: self._phone(m, counts), text)
            text = _ADDRESS_RE.sub(lambda m: self._count(counts, ADDRESS), text)
            if digits >= self.config.min_account_digits:
                text = _DIGIT_RUN_RE.sub(lambda m: self._digit_run(m, counts), text)
        if any(map(lower.__contains__, _NAME_INTRO_WORDS)):
            text = self._names_after_intros(text, counts)
        if any(map(lower.__contains__, _SIGNOFF_WORDS)):
            text = _NAME_SIGNOFF_RE.sub(lambda m: self._name(m, counts), text)
        if any(map(text[-self.config.name_signoff_tail_chars:].__contains__, _DASHES)):
            text = _NAME_DASH_END_RE.sub(lambda m: self._name(m, counts), text)
        return text

    @staticmethod
    def _count(counts: Counter, placeholder: str) -> str:
        counts[placeholder] += 1
        return placeholder

    def _url(self, match: re.Match, counts: Counter) -> str:
        found = match.group(0)
        stripped = found.rstrip(_TRAILING_PUNCT)
        return self._count(counts, URL) + found[len(stripped):]

    def _mask_cards(self, text: str, counts: Counter) -> str:
        """Luhn-valid 13-19 digit runs -> [CARD].

        A digit run may join a card to a number before or after it ("555-123-4567 4000-0000-0000-6"):
        each possible start is tried, with the longest Luhn-valid prefix of its run, so a failed
        checksum on the joined run does not hide the card inside it.
        """
        pieces, done, position = [], 0, 0
        while True:
            match = _CARD_RE.search(text, position)
            if match is None:
                break
            length = self._card_prefix_length(match.group(0))
            if length:
                pieces += [text[done:match.start()], self._count(counts, CARD)]
                done = position = match.start() + length
            else:
                position = match.start() + 1
        return "".join(pieces) + text[done:] if pieces else text

    @staticmethod
    def _card_prefix_length(run: str) -> int:
        """Characters of the longest prefix of a digit run (digits + single separators), ending at a separator
        or the run's end, that is a Luhn-valid card number; 0 when there is none."""
        digit_ends = [index + 1 for index, char in enumerate(run) if char.isdigit()]
        for count in range(min(len(digit_ends), 19), 12, -1):
            end = digit_ends[count - 1]
            if end < len(run) and run[end].isdigit():
                continue  # a prefix must end at a separator: "12345678901234567" is one id, not a card + "4567"
            prefix = run[:end]
            if luhn_valid(_only_digits(prefix)):
                return len(prefix)
        return 0

    def _id_group(self, match: re.Match, counts: Counter, placeholder: str) -> str:
        identifier = match.group("id")
        # An identifier has a digit and is not a short number like "order 2" or "order 12 days ago".
        if not _HAS_DIGIT_RE.search(identifier) or len(identifier.lstrip("#")) < 4:
            return match.group(0)
        start = match.start("id") - match.start(0)
        return match.group(0)[:start] + self._count(counts, placeholder)

    def _phone(self, match: re.Match, counts: Counter) -> str:
        found = match.group(0)
        if self._is_phone(found):
            return self._count(counts, PHONE)
        if " " not in found:
            return found
        return self._split_phones(found, counts)

    def _is_phone(self, found: str) -> bool:
        digits = len(_only_digits(found))
        if not self.config.min_phone_digits <= digits <= self.config.max_phone_digits:
            return False
        if _ISO_DATE_RE.fullmatch(found):
            return False
        if found.isdigit() and digits > self.config.max_bare_phone_digits:
            return False  # a long unseparated number is an account or tracking id: _digit_run masks it
        return _phone_shaped(found, digits)

    def _split_phones(self, found: str, counts: Counter) -> str:
        """Several numbers side by side ("555-123-4567 555-987-6543"): mask the longest phone-shaped
        run of space-separated tokens from the left, then continue after it."""
        tokens = found.split(" ")
        out: list[str] = []
        start = 0
        while start < len(tokens):
            best = 0
            for end in range(start + 1, len(tokens) + 1):
                candidate = " ".join(tokens[start:end])
                if len(_only_digits(candidate)) > self.config.max_phone_digits:
                    break
                if self._is_phone(candidate):
                    best = end
            if best:
                out.append(self._count(counts, PHONE))
                start = best
            else:
                out.append(tokens[start])
                start += 1
        return " ".join(out)

    def _digit_run(self, match: re.Match, counts: Counter) -> str:
        if len(match.group(0)) < self.config.min_account_digits:
            return match.group(0)
        return self._count(counts, ACCOUNT_ID)

    def _names_after_intros(self, text: str, counts: Counter) -> str:
        """_NAME_INTRO_RE tried only at word starts where an intro word begins (same result as a search)."""
        lower = text.lower()
        starts = sorted({i for word in _NAME_INTRO_WORDS for i in _find_all(lower, word)
                         if i == 0 or not lower[i - 1].isalnum()})
        pieces, done = [], 0
        for start in starts:
            if start < done:
                continue
            match = _NAME_INTRO_RE.match(text, start)
            if match:
                pieces += [text[done:start], self._name(match, counts)]
                done = match.end()
        return "".join(pieces) + text[done:] if pieces else text

    def _name(self, match: re.Match, counts: Counter) -> str:
        name = match.group("name")
        if name.split()[0].lower() in _NOT_NAMES:
            return match.group(0)
        start = match.start("name") - match.start(0)
        end = match.end("name") - match.start(0)
        whole = match.group(0)
        return whole[:start] + self._count(counts, NAME) + whole[end:]


def pseudonymise(value: Optional[str], salt: str, hex_chars: int = 16) -> Optional[str]:
    """A stable, salted, one-way stand-in for an identifier (same input + salt -> same output)."""
    if value is None or value == "":
        return None
    digest = hashlib.blake2b(str(value).encode("utf-8"), key=salt.encode("utf-8")[:64], digest_size=16)
    return "p_" + digest.hexdigest()[:hex_chars]


PSEUDONYM_SALT_SECRET = "feedback-brain/pseudonym-salt"
"""Id of the salt's secret when `processing.pseudonym_salt_secret_id` is empty (a local run, or a module run by
hand): the local file then has the name the pipeline's default secret id gives it, so batch jobs, the live
loop and hand runs in one workspace make the same pseudonyms."""


def pseudonym_salt(config: ProcessingConfig) -> str:
    """The salt of customer / order id pseudonyms: Secrets Manager on AWS, a random per-workspace file locally."""
    from processing.secrets import read_secret_cached

    return read_secret_cached(config.pseudonym_salt_secret_id, PSEUDONYM_SALT_SECRET)
