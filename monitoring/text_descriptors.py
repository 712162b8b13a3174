"""Per-text descriptors that Model Monitor can compare: length, vocabulary fit, language, PII, script.

SageMaker's built-in data-quality monitor has nothing for free text, so each text is turned
into a few numbers and one category whose distributions can be baselined and compared.
The same function runs on training texts (baseline) and on captured traffic (monitoring job).
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from monitoring.config import MonitoringConfig

logger = logging.getLogger(__name__)

UNKNOWN_LANGUAGE = "unknown"
DEFAULT_UNK_TOKEN = "[UNK]"
TOKENIZER_FILE = "tokenizer.json"

# Feature names as they appear in statistics.json / constraints.json (stable: dashboards key on them).
CHAR_LENGTH = "text_char_length"
WORD_COUNT = "text_word_count"
OOV_RATE = "text_oov_rate"
PII_RATE = "text_pii_placeholder_rate"
NON_ASCII_SHARE = "text_non_ascii_share"
LANGUAGE = "text_language"

NUMERIC_DESCRIPTORS = (CHAR_LENGTH, WORD_COUNT, OOV_RATE, PII_RATE, NON_ASCII_SHARE)
CATEGORICAL_DESCRIPTORS = (LANGUAGE,)
INTEGRAL_DESCRIPTORS = (CHAR_LENGTH, WORD_COUNT)


@dataclass
class TextDescriptors:
    """Descriptor columns of a batch of texts, one list entry per text."""

    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


class LanguageDetector:
    """Deterministic langdetect wrapper; short or undetectable texts are 'unknown', never an error."""

    def __init__(self, config: MonitoringConfig):
        from langdetect import DetectorFactory

        DetectorFactory.seed = config.language_detection_seed
        self._min_chars = config.language_min_chars

    def detect(self, text: str) -> str:
        from langdetect import detect
        from langdetect.lang_detect_exception import LangDetectException

        if len(text.strip()) < self._min_chars:
            return UNKNOWN_LANGUAGE
        try:
            return detect(text)
        except LangDetectException:
            return UNKNOWN_LANGUAGE


def load_tokenizer(tokenizer_file: Path) -> Any:
    """The model's fast tokenizer (tokenizer.json) without truncation or padding."""
    from tokenizers import Tokenizer

    if not Path(tokenizer_file).is_file():
        raise FileNotFoundError(f"{tokenizer_file} not found: descriptors need the model's tokenizer.json")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


class OovCounter:
    """Share of words the tokenizer does not know: [UNK], or split into many word pieces."""

    def __init__(self, tokenizer: Any, min_word_pieces: int):
        self._tokenizer = tokenizer
        unk_token = getattr(tokenizer.model, "unk_token", None) or DEFAULT_UNK_TOKEN
        self._unk_id = tokenizer.token_to_id(unk_token)
        self._min_pieces = min_word_pieces

    def rates(self, texts: Sequence[str]) -> list[float]:
        rates = []
        for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False):
            pieces_per_word: dict[int, int] = {}
            unknown_words: set[int] = set()
            for token_id, word_id in zip(encoding.ids, encoding.word_ids):
                if word_id is None:
                    continue
                pieces_per_word[word_id] = pieces_per_word.get(word_id, 0) + 1
                if token_id == self._unk_id:
                    unknown_words.add(word_id)
            if not pieces_per_word:
                rates.append(0.0)
                continue
            oov = sum(1 for w, n in pieces_per_word.items() if w in unknown_words or n >= self._min_pieces)
            rates.append(oov / len(pieces_per_word))
        return rates


class TextDescriber:
    """Computes every descriptor of a batch of texts (the tokenizer file is the model's own)."""

    def __init__(self, tokenizer_file: Path, config: MonitoringConfig):
        self._config = config
        self._oov = OovCounter(load_tokenizer(tokenizer_file), config.oov_min_word_pieces)
        self._languages = LanguageDetector(config)
        self._pii = re.compile(config.pii_placeholder_pattern)

    def describe(self, texts: Sequence[str]) -> TextDescriptors:
        started = time.monotonic()
        columns: dict[str, list[Any]] = {name: [] for name in (*NUMERIC_DESCRIPTORS, *CATEGORICAL_DESCRIPTORS)}
        step = self._config.progress_every
        for begin in range(0, len(texts), step):
            chunk = texts[begin:begin + step]
            columns[OOV_RATE].extend(self._oov.rates(chunk))
            for text in chunk:
                words = text.split()
                columns[CHAR_LENGTH].append(len(text))
                columns[WORD_COUNT].append(len(words))
                columns[PII_RATE].append(len(self._pii.findall(text)) / len(words) if words else 0.0)
                columns[NON_ASCII_SHARE].append(sum(1 for c in text if ord(c) > 127) / len(text) if text else 0.0)
                columns[LANGUAGE].append(self._languages.detect(text))
            done = begin + len(chunk)
            if len(texts) > step:
                elapsed = max(time.monotonic() - started, 1e-9)
                logger.info("descriptors: %d/%d texts (%.0f texts/s)", done, len(texts), done / elapsed)
        return TextDescriptors(columns)
