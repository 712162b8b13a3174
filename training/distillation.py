"""Teacher outputs and the distillation loss (docs/teacher.md).

Teacher outputs are a folder (the training job's `teacher` channel) holding
- `teacher_manifest.json`: `{"format_version": 1, "key": "text_sha256", "label_maps": {...}, "teacher": ...}`;
- `teacher_outputs.jsonl.gz`: one row per text, `{"key": ..., "sentiment": [p, ...], "intent": [p, ...],
  "aspects": [p, ...]}` with probabilities in the manifest's label order.
Rows are keyed by `text_key`: the sha256 of the text the model reads (`processing.schema.example_model_input`),
not by feedback_id, so that outputs scored on one run of feature engineering (or on a GPU machine from the
same example files) match the texts of another run, whose pseudonymised ids may differ; the same text always
gets the same teacher answer, so duplicates need no id.

The loss: see `soft_task_losses` and `training.model.MultiTaskClassifier.masked_loss`.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from processing.schema import TASKS

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "teacher_manifest.json"
OUTPUTS_FILE = "teacher_outputs.jsonl.gz"
KEY_KIND = "text_sha256"
PROBABILITY_DIGITS = 5
"""Decimals kept per probability (a 100k-text file stays a few MB compressed)."""
EPSILON = 1e-7


class TeacherOutputsError(ValueError):
    """Teacher outputs that cannot be used (missing files, other labels, malformed rows)."""


@dataclass(frozen=True)
class DistillationSettings:
    """How the loss mixes gold labels with the teacher (training.config fields `distillation_*`)."""

    hard_weight: float = 0.5
    soft_weight: float = 0.5
    temperature: float = 2.0


def text_key(text: str) -> str:
    """The key of a text in teacher outputs: sha256 of its UTF-8 bytes, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- files
def write_teacher_outputs(
    directory: str | Path, label_maps: Mapping[str, Sequence[str]], texts: Sequence[str],
    probabilities: Mapping[str, np.ndarray], teacher: Mapping | None = None,
) -> Path:
    """Write one row per distinct text (`probabilities[task]` is [len(texts), n_labels]); returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        shape = probabilities[task].shape
        if shape != (len(texts), len(label_maps[task])):
            raise TeacherOutputsError(f"{task} probabilities have shape {shape}, expected {(len(texts), len(label_maps[task]))}")
    written: set[str] = set()
    with gzip.open(directory / OUTPUTS_FILE, "wt", encoding="utf-8") as handle:
        for row, text in enumerate(texts):
            key = text_key(text)
            if key in written:
                continue
            written.add(key)
            record = {"key": key}
            for task in TASKS:
                record[task] = [round(float(p), PROBABILITY_DIGITS) for p in probabilities[task][row]]
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    manifest = {"format_version": FORMAT_VERSION, "key": KEY_KIND, "rows": len(written),
                "label_maps": {task: list(label_maps[task]) for task in TASKS}, "teacher": dict(teacher or {})}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


def read_teacher_outputs(directory: str | Path, label_maps: Mapping[str, Sequence[str]]) -> dict[str, dict[str, list[float]]]:
    """`{key: {task: probabilities in label_maps' order}}`; teacher labels are matched to ours by name."""
    directory = Path(directory)
    manifest_path, outputs_path = directory / MANIFEST_FILE, directory / OUTPUTS_FILE
    for path in (manifest_path, outputs_path):
        if not path.is_file():
            raise TeacherOutputsError(f"teacher outputs in {directory}: {path.name} is missing "
                                      f"(write them with `python -m training.teacher_outputs`)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("key") != KEY_KIND:
        raise TeacherOutputsError(f"{manifest_path}: format_version {manifest.get('format_version')!r} / key "
                                  f"{manifest.get('key')!r}, this code reads {FORMAT_VERSION} / {KEY_KIND!r}")
    theirs = manifest.get("label_maps") or {}
    order: dict[str, list[int]] = {}
    for task in TASKS:
        if sorted(theirs.get(task) or []) != sorted(label_maps[task]):
            raise TeacherOutputsError(f"{manifest_path}: the teacher's {task} labels {theirs.get(task)} are not the "
                                      f"student's {list(label_maps[task])}")
        order[task] = [list(theirs[task]).index(name) for name in label_maps[task]]
    outputs: dict[str, dict[str, list[float]]] = {}
    with gzip.open(outputs_path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                outputs[record["key"]] = {task: [float(record[task][i]) for i in order[task]] for task in TASKS}
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise TeacherOutputsError(f"{outputs_path} line {number}: {type(error).__name__}: {error}") from None
    return outputs


def attach_teacher_outputs(examples: Iterable, outputs: Mapping[str, Mapping[str, list[float]]]) -> tuple[int, int]:
    """Set `example.teacher` (sentiment, intent, aspects probabilities) where the teacher scored the text.

    Returns (matched, missing)."""
    matched = missing = 0
    for example in examples:
        found = outputs.get(text_key(example.text))
        if found is None:
            example.teacher = None
            missing += 1
        else:
            example.teacher = [found[task] for task in TASKS]
            matched += 1
    return matched, missing


# ---------------------------------------------------------------------- loss
def soft_task_losses(
    logits: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor], teacher_mask: torch.Tensor,
    temperature: float,
) -> dict[str, torch.Tensor]:
    """Per task, the mean over rows with teacher outputs (`teacher_mask` [batch]) of the student's distance to the teacher.

    sentiment, intent: T^2 x KL(teacher_T || student_T), both distributions softened by T (the teacher's
    probabilities p become p^(1/T), renormalised: the same as dividing its logits by T).
    aspects: mean over aspects of the Bernoulli KL(teacher || sigmoid(student)) = BCE(student, teacher) minus the
    teacher's entropy: BCE's gradient, and exactly 0 when the student matches the teacher.
    Every term is 0 (with a zero gradient) when no row has teacher outputs."""
    mask = teacher_mask.float()
    rows = mask.sum().clamp(min=1.0)
    losses: dict[str, torch.Tensor] = {}
    for task in ("sentiment", "intent"):
        student = F.log_softmax(logits[task].float() / temperature, dim=-1)
        target = F.log_softmax(teacher[task].float().clamp(min=EPSILON).log() / temperature, dim=-1)
        per_row = (target.exp() * (target - student)).sum(dim=-1) * temperature**2
        losses[task] = (per_row * mask).sum() / rows
    target = teacher["aspects"].float().clamp(EPSILON, 1 - EPSILON)
    cross_entropy = F.binary_cross_entropy_with_logits(logits["aspects"].float(), target, reduction="none")
    entropy = -(target * target.log() + (1 - target) * (1 - target).log())
    per_row = (cross_entropy - entropy).mean(dim=-1)
    losses["aspects"] = (per_row * mask).sum() / rows
    return losses


def collate_teacher(rows: Sequence) -> dict[str, torch.Tensor]:
    """Batch tensors `teacher_sentiment`, `teacher_intent`, `teacher_aspects`, `teacher_mask` (zeros where unscored);
    at least one row must have teacher outputs."""
    scored = next(e.teacher for e in rows if e.teacher is not None)
    batch: dict[str, torch.Tensor] = {}
    for column, task in enumerate(TASKS):
        width = len(scored[column])
        batch[f"teacher_{task}"] = torch.tensor(
            [e.teacher[column] if e.teacher is not None else [0.0] * width for e in rows], dtype=torch.float32)
    batch["teacher_mask"] = torch.tensor([float(e.teacher is not None) for e in rows], dtype=torch.float32)
    return batch
