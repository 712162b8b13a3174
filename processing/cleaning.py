"""Text normalisation: HTML removal, Unicode NFKC, whitespace. Pure functions (Spark-safe)."""
from __future__ import annotations

import html
import re
import unicodedata

# Contents of these elements are code or styling, never customer words: drop them whole.
_HIDDEN_ELEMENTS = re.compile(r"<\s*(script|style|noscript|template)\b[^>]*>.*?(<\s*/\s*\1\s*>|$)",
                              re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"<!--.*?(-->|$)", re.DOTALL)
# Block-level tags separate words; replacing them by a space keeps "a</p><p>b" as two words.
_TAGS = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s+[^<>]*)?/?>")
# Zero-width and control characters (keep \t \n \r, collapsed below).
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\u2028\u2029\u2060\ufeff]")
# The ASCII members of _INVISIBLE, for a bytes.translate deletion (C speed, no regex scan).
_ASCII_INVISIBLE = bytes(b for b in range(128) if _INVISIBLE.match(chr(b)))


def strip_html(text: str) -> str:
    """Remove tags, comments and script/style contents; decode entities (&amp; -> &)."""
    if "<" in text:
        text = _HIDDEN_ELEMENTS.sub(" ", text)
        text = _COMMENTS.sub(" ", text)
        text = _TAGS.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
        if "<" in text:  # entities can encode tags (&lt;script&gt;): strip what they decoded to
            text = _TAGS.sub(" ", _HIDDEN_ELEMENTS.sub(" ", text))
    return text


def normalize_unicode(text: str) -> str:
    """NFKC (full-width letters, ligatures, non-breaking spaces become plain) minus invisibles."""
    if text.isascii():
        return text.encode("ascii").translate(None, _ASCII_INVISIBLE).decode("ascii")
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace become one space, none at the ends (str.split's whitespace is regex \\s)."""
    return " ".join(text.split())


def clean_text(text: str) -> str:
    """The silver normalisation of one text: HTML stripped, NFKC, single spaces."""
    return collapse_whitespace(normalize_unicode(strip_html(text)))


class SilverRowBuilder:
    """A validated FeedbackRecord -> its silver row: clean, PII-masked, pseudonymised, language set.

    Row-level and free of shared state, so a Spark `mapPartitions` or a worker process can
    build one per partition and call `build` on each record.
    """

    def __init__(self, config=None):
        from processing.config import ProcessingConfig
        from processing.language import LanguageDetector
        from processing.pii import PiiMasker, pseudonym_salt

        self.config = config or ProcessingConfig()
        self.masker = PiiMasker(self.config)
        self.languages = LanguageDetector(self.config)
        self.salt = pseudonym_salt(self.config)

    def build(self, record, source_file: str, line_no: int, pii_counts=None, detect_language: bool = True) -> dict:
        """Silver row dict (lake.SILVER_SCHEMA fields); `text` may come out empty (caller quarantines).

        With `detect_language=False` the caller runs `fill_language(row)` later (the job does
        so only for rows that pass the spam rules: detection is the costliest step per row).
        """
        from collections import Counter

        from processing.pii import pseudonymise

        counts = Counter()
        row = record.model_dump()
        row["text"] = self.masker.mask(clean_text(record.text), counts)
        if record.title:
            row["title"] = self.masker.mask(clean_text(record.title), counts) or None
        hex_chars = self.config.pseudonym_hex_chars
        row["customer_id"] = pseudonymise(record.customer_id, self.salt, hex_chars)
        row["order_id"] = pseudonymise(record.order_id, self.salt, hex_chars)
        row["language_detected"] = False
        if detect_language:
            self.fill_language(row)
        row["pii_masked"] = sorted(counts)
        row["split_group"] = None
        row["source_file"] = source_file
        row["line_no"] = line_no
        if pii_counts is not None:
            pii_counts.update(counts)
        return row

    def fill_language(self, row: dict) -> None:
        """Detect the language of a built row whose record did not carry one."""
        if not row["language"]:
            row["language_detected"] = True
            row["language"] = self.languages.detect(row["text"]) if row["text"] else None
