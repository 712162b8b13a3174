"""Turn texts into sentiment / intent / aspect predictions with the exported model.

Two runtimes share one tokenizer and one post-processing path:
- `OnnxPredictor`: ONNX Runtime on `onnx/model.int8.onnx` (default) or `onnx/model.onnx`.
  It never imports torch or transformers: tokenisation uses the `tokenizers` library
  directly, which keeps the server's start-up at ~0.5 s and its memory at ~220 MB.
- `TorchPredictor`: the Hugging Face weights through `training.model.MultiTaskClassifier`
  (GPU when one is present), imported lazily.

Flags (urgency, safety_concern, refund_intent, profanity) are not model heads: they are
rule-based, from the predicted intent / aspects and keyword lexicons in
`inference/lexicons/flags_v1.json` (see `FlagRules`).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from inference.config import RUNTIMES, ServingConfig
from training.metrics import aspect_decisions, model_aspect_thresholds

logger = logging.getLogger(__name__)

MODEL_CARD_FILE = "fbrain_model.json"
TOKENIZER_FILE = "tokenizer.json"
ONNX_FILES = {"onnx-int8": "onnx/model.int8.onnx", "onnx": "onnx/model.onnx"}
OUTPUT_NAMES = ("sentiment_logits", "intent_logits", "aspect_logits", "embedding")
DEFAULT_LEXICON = Path(__file__).resolve().parent / "lexicons" / "flags_v1.json"
PROBABILITY_DECIMALS = 6
"""Probabilities are rounded in responses: 1e-6 is far below any threshold we apply."""


class ModelLoadError(RuntimeError):
    """The model directory is missing a file the chosen runtime needs, or holds a bad one."""


@dataclass(frozen=True)
class ModelCard:
    """What the server needs to know about a model directory (from fbrain_model.json)."""

    name: str
    version: str
    label_maps: dict[str, list[str]]
    max_seq_length: int
    aspect_thresholds: dict[str, float]
    taxonomy_version: str

    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path,
        name: str | None = None,
        version: str | None = None,
    ) -> "ModelCard":
        path = Path(model_dir) / MODEL_CARD_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path} not found: is {model_dir} a feedback-brain model directory?")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            label_maps = {task: list(raw["label_maps"][task]) for task in ("sentiment", "intent", "aspects")}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ModelLoadError(f"{path}: needs label_maps with sentiment, intent and aspects ({error})") from None
        try:
            # The threshold training stored with the model: evaluation and the gate judged it with this one.
            vector = model_aspect_thresholds(raw, label_maps["aspects"])
        except (TypeError, ValueError) as error:
            raise ModelLoadError(f"{path}: {error}") from None
        thresholds = dict(zip(label_maps["aspects"], vector.tolist()))
        return cls(
            name=name or str(raw.get("model_name") or raw.get("name") or Path(model_dir).resolve().name),
            version=str(version or raw.get("model_version") or raw.get("version") or "local"),
            label_maps=label_maps,
            max_seq_length=int(raw.get("max_seq_length") or 128),
            aspect_thresholds=thresholds,
            taxonomy_version=str(raw.get("taxonomy_version", "")),
        )


@dataclass
class EncodedBatch:
    """Token id matrices padded to the longest text of the batch, plus which texts were cut."""

    arrays: dict[str, np.ndarray]
    truncated: list[bool]


class TextEncoder:
    """The model's fast tokenizer (tokenizer.json) via the `tokenizers` library, no torch."""

    def __init__(self, model_dir: Path, max_seq_length: int):
        from tokenizers import Tokenizer

        path = Path(model_dir) / TOKENIZER_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path} not found: the model directory must hold a fast tokenizer")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.max_seq_length = max_seq_length
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        # Padding is done per length-sorted group (see `pad`), not by the tokenizer.
        self.tokenizer.no_padding()
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id

    def tokenize(self, texts: Sequence[str]) -> list:
        """Unpadded encodings (ids, type ids, attention mask, overflow) of each text."""
        return self.tokenizer.encode_batch(list(texts))

    def pad(self, encodings: Sequence) -> dict[str, np.ndarray]:
        """Model inputs for a group of encodings, padded to the longest of the group."""
        length = max(len(e.ids) for e in encodings)
        input_ids = np.full((len(encodings), length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(encodings), length), dtype=np.int64)
        token_type_ids = np.zeros((len(encodings), length), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            input_ids[row, :n] = encoding.ids
            attention_mask[row, :n] = encoding.attention_mask
            token_type_ids[row, :n] = encoding.type_ids
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}

    def encode(self, texts: Sequence[str]) -> EncodedBatch:
        encodings = self.tokenize(texts)
        return EncodedBatch(arrays=self.pad(encodings), truncated=[bool(e.overflowing) for e in encodings])

    def token_count(self, text: str) -> int:
        """Tokens the text would have without truncation (for `overlength = reject`)."""
        self.tokenizer.no_truncation()
        try:
            return len(self.tokenizer.encode(text).ids)
        finally:
            self.tokenizer.enable_truncation(max_length=self.max_seq_length)


@dataclass
class FlagRule:
    phrases: re.Pattern | None
    intents: frozenset[str]
    aspects: frozenset[str]
    implied_by: tuple[str, ...]


@dataclass
class FlagRules:
    """Rule-based flags: lexicon phrases (whole words), predicted intents/aspects, implications."""

    rules: dict[str, FlagRule]
    intent_threshold: float
    version: str = ""

    @classmethod
    def load(cls, path: Path | str = DEFAULT_LEXICON) -> "FlagRules":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        rules: dict[str, FlagRule] = {}
        for name, spec in raw["flags"].items():
            phrases = [p.strip() for p in spec.get("phrases", []) if p.strip()]
            pattern = (
                re.compile(r"\b(?:" + "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True)) + r")\b", re.I)
                if phrases
                else None
            )
            rules[name] = FlagRule(
                pattern, frozenset(spec.get("intents", [])), frozenset(spec.get("aspects", [])), tuple(spec.get("implied_by", []))
            )
        unknown = sorted({o for r in rules.values() for o in r.implied_by} - set(rules))
        if unknown:
            raise ModelLoadError(f"{path}: implied_by names unknown flags {unknown}")
        return cls(rules=rules, intent_threshold=float(raw.get("intent_threshold", 0.5)), version=str(raw.get("version", "")))

    def evaluate(self, text: str, intent: str, intent_score: float, aspects: Sequence[str]) -> dict[str, bool]:
        raised: dict[str, bool] = {}
        for name, rule in self.rules.items():
            hit = bool(rule.phrases and rule.phrases.search(text))
            hit = hit or (intent in rule.intents and intent_score >= self.intent_threshold)
            raised[name] = hit or bool(rule.aspects.intersection(aspects))
        changed = True
        while changed:  # implications may chain (a implies b implies c): run to a fixed point
            changed = False
            for name, rule in self.rules.items():
                if not raised[name] and any(raised.get(other, False) for other in rule.implied_by):
                    raised[name] = changed = True
        return raised


def plan_length_groups(sorted_lengths: Sequence[int], call_overhead_tokens: float,
                       max_group_size: int) -> list[tuple[int, int]]:
    """Cut ascending lengths into contiguous groups [start, end) with the least total cost.

    A group costs `call_overhead_tokens + size * its longest length` (a model call is padded to
    its longest text); dynamic programming over the cut points, O(n * max_group_size).
    `call_overhead_tokens <= 0` gives fixed groups of `max_group_size`.
    """
    n = len(sorted_lengths)
    limit = max(1, max_group_size)
    if call_overhead_tokens <= 0:
        return [(start, min(start + limit, n)) for start in range(0, n, limit)]
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = sorted_lengths[end - 1]
        for start in range(max(0, end - limit), end):
            cost = best[start] + call_overhead_tokens + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append((cut[end], end))
        end = cut[end]
    return groups[::-1]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _rounded(labels: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {label: round(float(v), PROBABILITY_DECIMALS) for label, v in zip(labels, values)}


class Predictor(Protocol):
    card: ModelCard
    runtime: str

    def predict(self, texts: Sequence[str], include_embedding: bool = False) -> list[dict[str, Any]]: ...

    def token_count(self, text: str) -> int: ...


class BasePredictor:
    """Tokenise, run the runtime's forward pass, turn logits into the response per text."""

    runtime = "base"

    def __init__(self, model_dir: Path, config: ServingConfig, card: ModelCard):
        self.model_dir = Path(model_dir)
        self.config = config
        self.card = card
        self.encoder = TextEncoder(self.model_dir, config.max_seq_length or card.max_seq_length)
        self.flags = FlagRules.load(config.flag_lexicon or DEFAULT_LEXICON)
        self.aspect_threshold_vector = np.asarray([card.aspect_thresholds[a] for a in card.label_maps["aspects"]])

    def forward(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def token_count(self, text: str) -> int:
        return self.encoder.token_count(text)

    def forward_sorted(self, encodings: Sequence) -> dict[str, np.ndarray]:
        """Run texts in length-sorted groups (`plan_length_groups`) and restore the input order.

        Mixed-length traffic padded to its longest text wastes most of the compute (feedback
        is ~25 tokens at the median, ~110 at the top).
        """
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        groups = plan_length_groups([len(encodings[i].ids) for i in order], self.config.group_call_overhead_tokens,
                                    self.config.sub_batch_size)
        collected: dict[str, list] = {}
        for start, end in groups:
            members = order[start:end]
            outputs = self.forward(self.encoder.pad([encodings[i] for i in members]))
            for name, values in outputs.items():
                slots = collected.setdefault(name, [None] * len(encodings))
                for row, index in enumerate(members):
                    slots[index] = values[row]
        return {name: np.stack(values) for name, values in collected.items()}

    def predict(self, texts: Sequence[str], include_embedding: bool = False) -> list[dict[str, Any]]:
        if not texts:
            return []
        encodings = self.encoder.tokenize(texts)
        truncated = [bool(e.overflowing) for e in encodings]
        outputs = self.forward_sorted(encodings)
        sentiment = _softmax(outputs["sentiment_logits"])
        intent = _softmax(outputs["intent_logits"])
        aspects = _sigmoid(outputs["aspect_logits"])
        aspect_hits = aspect_decisions(aspects, self.aspect_threshold_vector)
        labels = self.card.label_maps
        model = {"name": self.card.name, "version": self.card.version, "runtime": self.runtime}
        results = []
        for i, text in enumerate(texts):
            s_idx, i_idx = int(sentiment[i].argmax()), int(intent[i].argmax())
            chosen = [a for a, hit in zip(labels["aspects"], aspect_hits[i]) if hit]
            intent_label, intent_score = labels["intent"][i_idx], float(intent[i][i_idx])
            result: dict[str, Any] = {
                "sentiment": {
                    "label": labels["sentiment"][s_idx],
                    "score": round(float(sentiment[i][s_idx]), PROBABILITY_DECIMALS),
                    "probabilities": _rounded(labels["sentiment"], sentiment[i]),
                },
                "intent": {
                    "label": intent_label,
                    "score": round(intent_score, PROBABILITY_DECIMALS),
                    "probabilities": _rounded(labels["intent"], intent[i]),
                },
                "aspects": {"labels": chosen, "scores": _rounded(labels["aspects"], aspects[i])},
                "flags": self.flags.evaluate(text, intent_label, intent_score, chosen),
                "truncated": truncated[i],
                "model": model,
            }
            if include_embedding and "embedding" in outputs:
                result["embedding"] = [round(float(v), PROBABILITY_DECIMALS) for v in outputs["embedding"][i]]
            results.append(result)
        return results


class OnnxPredictor(BasePredictor):
    """ONNX Runtime on CPU; torch is never imported on this path."""

    def __init__(self, model_dir: Path, config: ServingConfig, card: ModelCard, runtime: str = "onnx-int8"):
        super().__init__(model_dir, config, card)
        import onnxruntime as ort

        self.runtime = runtime
        path = self.model_dir / ONNX_FILES[runtime]
        if not path.is_file():
            present = sorted(str(p.relative_to(self.model_dir)) for p in self.model_dir.glob("onnx/*.onnx"))
            raise ModelLoadError(f"runtime {runtime!r} needs {path}; the model directory has {present or 'no ONNX files'}")
        self.session = self._session(ort, path, spinning=config.onnx_allow_spinning)
        self.single_text_session = (self._session(ort, path, spinning=True)
                                    if config.onnx_single_text_session and not config.onnx_allow_spinning else self.session)
        self.input_names = [i.name for i in self.session.get_inputs()]
        available = {o.name for o in self.session.get_outputs()}
        missing = [n for n in OUTPUT_NAMES[:3] if n not in available]
        if missing:
            raise ModelLoadError(f"{path} lacks outputs {missing}; it has {sorted(available)}")
        self.output_names = [n for n in OUTPUT_NAMES if n in available]

    def _session(self, ort: Any, path: Path, spinning: bool) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.onnx_intra_op_threads
        options.inter_op_num_threads = self.config.onnx_inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    def forward(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: arrays[name] for name in self.input_names}
        session = self.single_text_session if len(arrays["input_ids"]) == 1 else self.session
        values = session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values))


class TorchPredictor(BasePredictor):
    """PyTorch eager on the HF weights (GPU when available), via training.model."""

    runtime = "torch"

    def __init__(self, model_dir: Path, config: ServingConfig, card: ModelCard):
        super().__init__(model_dir, config, card)
        import torch

        from training.model import MultiTaskClassifier

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(config.torch_threads)
        self.model = MultiTaskClassifier.from_pretrained(str(self.model_dir)).to(self.device).eval()
        encoder_config = getattr(getattr(self.model, "encoder", None), "config", None)
        self.accepts_token_types = getattr(encoder_config, "type_vocab_size", 2) > 1

    def forward(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
        if not self.accepts_token_types:
            inputs.pop("token_type_ids")
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = {}
        for name in OUTPUT_NAMES:
            value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
            if value is not None:
                result[name] = value.float().cpu().numpy()
        return result


def load_predictor(
    model_dir: Path | str,
    config: ServingConfig | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> BasePredictor:
    """Load the model directory with the runtime named in config.runtime."""
    config = config or ServingConfig()
    if config.runtime not in RUNTIMES:
        raise ModelLoadError(f"unknown runtime {config.runtime!r}; choose one of {RUNTIMES}")
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    card = ModelCard.from_model_dir(model_dir, model_name, model_version)
    if config.runtime == "torch":
        predictor: BasePredictor = TorchPredictor(model_dir, config, card)
    else:
        predictor = OnnxPredictor(model_dir, config, card, config.runtime)
    logger.info(
        "loaded model %s version %s from %s (runtime %s, max_seq_length %d)",
        card.name, card.version, model_dir, predictor.runtime, predictor.encoder.max_seq_length,
    )
    return predictor

