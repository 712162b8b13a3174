"""The multi-task feedback classifier: one encoder, three heads, a masked loss.

Real labeled data never carries all three labels (star-rated reviews have sentiment, support
messages intents, aspect data sets aspects), so every example contributes only to the heads
of the tasks it is labeled for: the loss of a task is averaged over the rows whose task mask
is 1, and a head that no row in a batch is labeled for gets an exactly-zero gradient.

Pooling is a masked mean over token states by default: all-MiniLM-L6-v2 was trained as a
sentence encoder with mean pooling, so the pooled vector is a meaningful sentence embedding
from step 0 (heads learn faster than on the untrained CLS position, and drift monitoring and
clustering get a good `embedding` output). `cls` is available for encoders trained that way.

Saved layout (see docs/contracts.md): `config.json` (encoder config + per-task id2label /
label2id), `model.safetensors`, tokenizer files, `fbrain_model.json` (label maps, taxonomy
version, backbone, max_seq_length, aspect decision threshold, training metrics).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from processing.schema import TASKS
from processing.taxonomy import CURRENT_VERSION, load_taxonomy
from training.backbone import resolve_backbone
from training.distillation import DistillationSettings, soft_task_losses
from training.metrics import (
    DEFAULT_ASPECT_THRESHOLD,
    METADATA_ASPECT_THRESHOLD,
    METADATA_ASPECT_THRESHOLDS,
    model_aspect_thresholds,
)

logger = logging.getLogger(__name__)

MODEL_TYPE = "fbrain_multitask"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "fbrain_model.json"
POOLING_MODES = ("mean", "cls")
SINGLE_LABEL_TASKS = ("sentiment", "intent")
MULTI_LABEL_TASK = "aspects"
HEAD_NAMES = {"sentiment": "sentiment_head", "intent": "intent_head", "aspects": "aspect_head"}
OUTPUT_NAMES = {"sentiment": "sentiment_logits", "intent": "intent_logits", "aspects": "aspect_logits"}


class ModelLoadError(RuntimeError):
    """A model directory is missing files or its files disagree with each other."""


@dataclass
class MultiTaskOutput(ModelOutput):
    """Forward result; `loss` first so Hugging Face's Trainer can drive the model too."""

    loss: Optional[torch.Tensor] = None
    sentiment_logits: Optional[torch.Tensor] = None
    intent_logits: Optional[torch.Tensor] = None
    aspect_logits: Optional[torch.Tensor] = None
    embedding: Optional[torch.Tensor] = None
    task_losses: Optional[dict[str, torch.Tensor]] = None


@dataclass
class LossSettings:
    """Per-task loss weights and optional class weights (index-aligned with the label maps)."""

    task_weights: dict[str, float] = field(default_factory=lambda: {task: 1.0 for task in TASKS})
    class_weights: dict[str, list[float]] = field(default_factory=dict)
    """`sentiment`/`intent`: weight per class; `aspects`: BCE positive weight per aspect."""
    distillation: DistillationSettings | None = None
    """Set when training against teacher outputs: each task's loss is hard_weight x the hard-label loss +
    soft_weight x the loss towards the teacher (training.distillation.soft_task_losses)."""


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _drop_pooler(encoder: nn.Module) -> None:
    # BERT-style encoders carry a CLS pooler we never use; its parameters would get no
    # gradient, which DDP rejects unless find_unused_parameters (slower) is on.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


def _load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    # AutoTokenizer peeks at config.json and warns that `fbrain_multitask` is no tokenizer
    # model type; tokenizer_config.json names the class, so the warning is noise.
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoTokenizer.from_pretrained(str(directory))
    finally:
        hf_logging.set_verbosity(previous)


class MultiTaskClassifier(nn.Module):
    """Any Hugging Face encoder + sentiment, intent and multi-label aspect heads."""

    def __init__(
        self,
        encoder: nn.Module,
        label_maps: dict[str, list[str]],
        *,
        pooling: str = "mean",
        head_dropout: float = 0.1,
        backbone: str = "",
        taxonomy_version: str = CURRENT_VERSION,
        max_seq_length: int = 128,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        missing = [task for task in TASKS if not label_maps.get(task)]
        if missing:
            raise ValueError(f"label_maps needs a non-empty label list for {missing}; got keys {sorted(label_maps)}")
        _drop_pooler(encoder)
        self.encoder = encoder
        self.label_maps = {task: list(label_maps[task]) for task in TASKS}
        self.pooling = pooling
        self.head_dropout = head_dropout
        self.backbone = backbone
        self.taxonomy_version = taxonomy_version
        self.max_seq_length = max_seq_length
        self.tokenizer = tokenizer
        self.metrics: dict[str, Any] = {}
        self.aspect_threshold = DEFAULT_ASPECT_THRESHOLD
        """Aspect decision threshold, saved in fbrain_model.json (training sets it from its config)."""
        self.aspect_threshold_overrides: dict[str, float] = {}
        """Per-aspect thresholds read from fbrain_model.json's `aspect_thresholds`, kept on save."""
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(head_dropout)
        self.sentiment_head = nn.Linear(hidden, len(self.label_maps["sentiment"]))
        self.intent_head = nn.Linear(hidden, len(self.label_maps["intent"]))
        self.aspect_head = nn.Linear(hidden, len(self.label_maps["aspects"]))
        self.loss_settings = LossSettings()
        for task in TASKS:
            self.register_buffer(f"_class_weight_{task}", torch.ones(len(self.label_maps[task])), persistent=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_backbone(
        cls,
        backbone: str,
        label_maps: dict[str, list[str]] | None = None,
        *,
        pooling: str = "mean",
        head_dropout: float = 0.1,
        max_seq_length: int = 128,
        taxonomy_version: str = CURRENT_VERSION,
        backbone_cache_dir: str | Path | None = None,
    ) -> "MultiTaskClassifier":
        """Pretrained encoder + fresh heads; label maps default to the current taxonomy."""
        source = resolve_backbone(backbone, backbone_cache_dir)
        encoder = AutoModel.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
        return cls(
            encoder,
            label_maps or load_taxonomy(taxonomy_version).label_maps(),
            pooling=pooling,
            head_dropout=head_dropout,
            backbone=backbone,
            taxonomy_version=taxonomy_version,
            max_seq_length=max_seq_length,
            tokenizer=tokenizer,
        )

    @classmethod
    def from_encoder_config(
        cls,
        encoder_config: PretrainedConfig,
        tokenizer: PreTrainedTokenizerBase,
        label_maps: dict[str, list[str]] | None = None,
        **kwargs: Any,
    ) -> "MultiTaskClassifier":
        """Randomly initialised encoder of the given shape (tests build tiny BERTs this way)."""
        encoder = AutoModel.from_config(encoder_config)
        kwargs.setdefault("backbone", f"random-{encoder_config.model_type}")
        taxonomy_version = kwargs.get("taxonomy_version", CURRENT_VERSION)
        return cls(encoder, label_maps or load_taxonomy(taxonomy_version).label_maps(), tokenizer=tokenizer, **kwargs)

    # ------------------------------------------------------------------ loss settings
    def set_loss_settings(self, settings: LossSettings) -> None:
        unknown = set(settings.task_weights) - set(TASKS)
        if unknown:
            raise ValueError(f"task weights for unknown tasks {sorted(unknown)}; tasks are {list(TASKS)}")
        for task, weights in settings.class_weights.items():
            if len(weights) != len(self.label_maps[task]):
                raise ValueError(
                    f"{task} class weights have {len(weights)} entries, the label map has {len(self.label_maps[task])}"
                )
            buffer = getattr(self, f"_class_weight_{task}")
            buffer.copy_(torch.as_tensor(weights, dtype=buffer.dtype))
        self.loss_settings = settings

    # ------------------------------------------------------------------ forward
    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled sentence vector (the `embedding` output)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        sentiment_labels: torch.Tensor | None = None,
        intent_labels: torch.Tensor | None = None,
        aspect_labels: torch.Tensor | None = None,
        task_mask: torch.Tensor | None = None,
        class_weight_rows: torch.Tensor | None = None,
        teacher_sentiment: torch.Tensor | None = None,
        teacher_intent: torch.Tensor | None = None,
        teacher_aspects: torch.Tensor | None = None,
        teacher_mask: torch.Tensor | None = None,
    ) -> MultiTaskOutput:
        """Logits for every task; with labels + `task_mask` ([batch, 3] in TASKS order) also the masked loss,
        mixed with the loss towards the teacher's probabilities (`teacher_*`, `teacher_mask` [batch]) when given."""
        # Not called `embedding`: the ONNX exporter names graph values after local variables,
        # which would clash with the graph output of that name.
        pooled = self.encode(input_ids, attention_mask, token_type_ids)
        features = self.dropout(pooled)
        output = MultiTaskOutput(
            sentiment_logits=self.sentiment_head(features),
            intent_logits=self.intent_head(features),
            aspect_logits=self.aspect_head(features),
            embedding=pooled,
        )
        if task_mask is not None:
            teacher = None
            if teacher_mask is not None:
                teacher = {"sentiment": teacher_sentiment, "intent": teacher_intent, "aspects": teacher_aspects}
            output.loss, output.task_losses = self.masked_loss(
                output, sentiment_labels, intent_labels, aspect_labels, task_mask, class_weight_rows,
                teacher=teacher, teacher_mask=teacher_mask,
            )
        return output

    def masked_loss(
        self,
        output: MultiTaskOutput,
        sentiment_labels: torch.Tensor,
        intent_labels: torch.Tensor,
        aspect_labels: torch.Tensor,
        task_mask: torch.Tensor,
        class_weight_rows: torch.Tensor | None = None,
        teacher: dict[str, torch.Tensor] | None = None,
        teacher_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of per-task losses, each a weighted mean over the rows labeled for that task.

        A row's sentiment / intent weight is `class_weight_rows[row, 0 / 1]` when given (per-source
        class weights, `training.data.source_class_weights`), else the model's weight of its class.
        With distillation settings each task's loss is hard_weight x that + soft_weight x the mean distance to
        the teacher over the rows it scored (0 for a batch without teacher outputs, e.g. validation), so a row
        with no gold label for a task gets that task's gradient from the teacher alone.
        """
        if sentiment_labels is None or intent_labels is None or aspect_labels is None:
            raise ValueError("a loss needs sentiment_labels, intent_labels and aspect_labels (use -1 / zeros where unlabeled)")
        mask = task_mask.float()
        losses: dict[str, torch.Tensor] = {}
        for column, task, logits, labels in (
            (0, "sentiment", output.sentiment_logits, sentiment_labels),
            (1, "intent", output.intent_logits, intent_labels),
        ):
            # Unlabeled rows hold -1; clamp to a valid index, the mask zeroes their term.
            labels = labels.clamp(min=0)
            per_row = F.cross_entropy(logits.float(), labels, reduction="none")
            if class_weight_rows is None:
                row_weight = getattr(self, f"_class_weight_{task}")[labels]
            else:
                row_weight = class_weight_rows[:, column].float()
            row_weight = mask[:, column] * row_weight
            losses[task] = (per_row * row_weight).sum() / row_weight.sum().clamp(min=1e-8)
        pos_weight = getattr(self, f"_class_weight_{MULTI_LABEL_TASK}")
        per_row = F.binary_cross_entropy_with_logits(
            output.aspect_logits.float(), aspect_labels.float(), pos_weight=pos_weight, reduction="none"
        ).mean(dim=1)
        losses[MULTI_LABEL_TASK] = (per_row * mask[:, 2]).sum() / mask[:, 2].sum().clamp(min=1.0)
        distillation = self.loss_settings.distillation
        if distillation is not None:
            soft = None
            if teacher is not None and teacher_mask is not None:
                logits = {"sentiment": output.sentiment_logits, "intent": output.intent_logits,
                          "aspects": output.aspect_logits}
                soft = soft_task_losses(logits, teacher, teacher_mask, distillation.temperature)
            for task in TASKS:
                losses[task] = distillation.hard_weight * losses[task] + (
                    distillation.soft_weight * soft[task] if soft is not None else 0.0)
        weights = self.loss_settings.task_weights
        total = sum(weights.get(task, 1.0) * losses[task] for task in TASKS)
        return total, losses

    # ------------------------------------------------------------------ save / load
    def head_parameters(self) -> list[nn.Parameter]:
        return [p for task in TASKS for p in getattr(self, HEAD_NAMES[task]).parameters()]

    def _config_dict(self) -> dict[str, Any]:
        tasks = {}
        for task in TASKS:
            labels = self.label_maps[task]
            tasks[task] = {
                "problem_type": "multi_label_classification" if task == MULTI_LABEL_TASK else "single_label_classification",
                "id2label": {str(i): name for i, name in enumerate(labels)},
                "label2id": {name: i for i, name in enumerate(labels)},
            }
        return {
            "architectures": ["MultiTaskClassifier"],
            "model_type": MODEL_TYPE,
            "fbrain_format_version": FORMAT_VERSION,
            "pooling": self.pooling,
            "head_dropout": self.head_dropout,
            "hidden_size": self.encoder.config.hidden_size,
            "tasks": tasks,
            "encoder": self.encoder.config.to_dict(),
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "label_maps": self.label_maps,
            "taxonomy_version": self.taxonomy_version,
            "backbone": self.backbone,
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling,
            METADATA_ASPECT_THRESHOLD: float(self.aspect_threshold),
            **({METADATA_ASPECT_THRESHOLDS: dict(self.aspect_threshold_overrides)} if self.aspect_threshold_overrides else {}),
            "metrics": self.metrics,
            "saved_at": datetime.now(timezone.utc).isoformat(),
        }

    def aspect_thresholds(self):
        """Per-aspect decision thresholds (numpy, label-map order), as every consumer reads them."""
        return model_aspect_thresholds(self.metadata(), self.label_maps[MULTI_LABEL_TASK])

    def save_pretrained(self, directory: str | Path, tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
        """Write config.json, model.safetensors, tokenizer files and fbrain_model.json."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ValueError("save_pretrained needs a tokenizer (pass one or build the model with one)")
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        (directory / CONFIG_FILE).write_text(json.dumps(self._config_dict(), indent=2), encoding="utf-8")
        tokenizer.save_pretrained(str(directory))
        (directory / METADATA_FILE).write_text(json.dumps(self.metadata(), indent=2), encoding="utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None) -> "MultiTaskClassifier":
        """Load a directory written by save_pretrained; never touches the network."""
        from safetensors.torch import load_file

        directory = Path(directory)
        missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE) if not (directory / name).is_file()]
        if missing:
            raise ModelLoadError(f"{directory} is not a feedback-brain model directory: missing {missing}")
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        if config.get("model_type") != MODEL_TYPE:
            raise ModelLoadError(f"{directory / CONFIG_FILE} has model_type {config.get('model_type')!r}, expected {MODEL_TYPE!r}")
        metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        label_maps = metadata["label_maps"]
        for task in TASKS:
            from_config = [config["tasks"][task]["id2label"][str(i)] for i in range(len(config["tasks"][task]["id2label"]))]
            if from_config != label_maps[task]:
                raise ModelLoadError(f"{task} labels differ between {CONFIG_FILE} and {METADATA_FILE} in {directory}")
        encoder_dict = dict(config["encoder"])
        encoder_config = AutoConfig.for_model(encoder_dict.pop("model_type"), **encoder_dict)
        encoder = AutoModel.from_config(encoder_config)
        model = cls(
            encoder,
            label_maps,
            pooling=config["pooling"],
            head_dropout=config.get("head_dropout", 0.0),
            backbone=metadata.get("backbone", ""),
            taxonomy_version=metadata.get("taxonomy_version", CURRENT_VERSION),
            max_seq_length=int(metadata.get("max_seq_length", 128)),
            tokenizer=_load_tokenizer(directory),
        )
        state = load_file(str(directory / WEIGHTS_FILE))
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModelLoadError(
                f"{directory / WEIGHTS_FILE} does not match the config: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        model.metrics = metadata.get("metrics", {})
        model.aspect_threshold = float(metadata.get(METADATA_ASPECT_THRESHOLD, DEFAULT_ASPECT_THRESHOLD))
        model.aspect_threshold_overrides = {k: float(v) for k, v in (metadata.get(METADATA_ASPECT_THRESHOLDS) or {}).items()}
        model.aspect_thresholds()  # fails here, naming the key, when the stored thresholds are unusable
        model.eval()
        if device is not None:
            model.to(device)
        return model

    # ------------------------------------------------------------------ inference helper
    @torch.no_grad()
    def predict_logits(self, texts: list[str], batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Logits and embeddings for raw texts (evaluation and parity checks use this)."""
        if self.tokenizer is None:
            raise ValueError("predict_logits needs the model's tokenizer")
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in (*OUTPUT_NAMES.values(), "embedding")}
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(
                texts[start : start + batch_size], truncation=True, max_length=self.max_seq_length,
                padding=True, return_tensors="pt",
            ).to(device)
            out = self(**{k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
            for name in OUTPUT_NAMES.values():
                chunks[name].append(getattr(out, name).float().cpu())
            chunks["embedding"].append(out.embedding.float().cpu())
        self.train(was_training)
        return {name: torch.cat(parts) if parts else torch.empty(0) for name, parts in chunks.items()}
