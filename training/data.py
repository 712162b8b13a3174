"""Training data: example files -> validated, tokenised examples -> padded batches.

Reads the `examples.jsonl` files feature engineering writes into each channel folder, keeps
rows that are usable and quarantines the rest with a reason (nothing is dropped silently; the
one reader and row check of `training.example_rows`), tokenises once, mixes the labeled
sources with per-source sampling weights each epoch, and groups examples of similar length into
a batch so padding (dynamic, per batch) stays small.
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from processing.schema import TASKS, example_model_input
from training.distillation import collate_teacher
from training.example_rows import QuarantinedRow, read_example_rows
from training.model import SINGLE_LABEL_TASKS

logger = logging.getLogger(__name__)

UNLABELED = -1
"""Label index of a single-label task the row is not labeled for (its loss is masked)."""


@dataclass
class Example:
    feedback_id: str
    text: str
    """What the model reads: `processing.schema.model_input_text(text, title)`."""
    source: str
    sentiment: int
    """Index into label_maps["sentiment"], or UNLABELED."""
    intent: int
    aspects: list[int]
    """Multi-hot over label_maps["aspects"] (all zeros when unlabeled)."""
    task_mask: list[int]
    """1 per task in TASKS order when the row is labeled for it."""
    input_ids: list[int] = field(default_factory=list)
    token_type_ids: list[int] | None = None
    class_weights: list[float] | None = None
    """Loss weight of this row's sentiment and intent label (`attach_source_class_weights`);
    None: the model's per-class weights apply."""
    teacher: list[list[float]] | None = None
    """The teacher's sentiment, intent and aspect probabilities for this text (training.distillation), or None."""

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class ExampleSet:
    examples: list[Example]
    quarantined: list[QuarantinedRow]
    unlabeled: int = 0
    """Valid rows labeled for no task (they cannot contribute to any loss)."""


def _to_example(row: Mapping[str, Any], label_maps: Mapping[str, Sequence[str]]) -> Example:
    """A row check_example_row accepted -> Example (label indices, multi-hot aspects, task mask)."""
    tasks = row.get("labeled_tasks") or []
    index = {
        task: list(label_maps[task]).index(row[task]) if task in tasks else UNLABELED for task in ("sentiment", "intent")
    }
    return Example(
        feedback_id=str(row.get("feedback_id") or ""),
        text=example_model_input(row),
        source=row["source"],
        sentiment=index["sentiment"],
        intent=index["intent"],
        aspects=[int("aspects" in tasks and name in row["aspects"]) for name in label_maps["aspects"]],
        task_mask=[int(task in tasks) for task in TASKS],
    )


def read_examples(channel_dir: str | Path, label_maps: Mapping[str, Sequence[str]], keep_unlabeled: bool = False) -> ExampleSet:
    """Training's view of a channel: rows labeled for at least one task (with keep_unlabeled, every valid row:
    distillation learns unlabeled rows from the teacher), feedback ids unique."""
    rows, quarantined, unlabeled = read_example_rows(
        channel_dir, label_maps, keep_unlabeled=keep_unlabeled, quarantine_duplicate_ids=True
    )
    return ExampleSet([_to_example(row, label_maps) for row in rows], quarantined, unlabeled)


def write_quarantine(rows: Sequence[QuarantinedRow], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(asdict(row)) + "\n")


def tokenize_examples(examples: Sequence[Example], tokenizer, max_seq_length: int, chunk: int = 1024) -> None:
    """Tokenise once, unpadded (batches pad to their own longest row)."""
    wants_types = "token_type_ids" in tokenizer.model_input_names
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        encoded = tokenizer([e.text for e in part], truncation=True, max_length=max_seq_length)
        for index, example in enumerate(part):
            example.input_ids = list(encoded["input_ids"][index])
            if wants_types and "token_type_ids" in encoded:
                example.token_type_ids = list(encoded["token_type_ids"][index])


def _inverse_frequency(counts: Counter, n_labels: int, max_weight: float, n_classes: int = 0) -> list[float]:
    """total / (n_classes x count) per label index, capped at max_weight; unseen labels get 1.0.

    n_classes (default: n_labels) is how many classes a balanced set would spread over."""
    total, n_classes = sum(counts.values()), n_classes or n_labels
    return [min(max_weight, total / (n_classes * counts[i])) if counts.get(i) else 1.0 for i in range(n_labels)]


def class_weights(examples: Sequence[Example], label_maps: dict[str, list[str]], max_weight: float) -> dict[str, list[float]]:
    """Inverse-frequency class weights (sentiment, intent) and neg/pos positive weights (aspects).

    Weights are scaled so a balanced set gets 1.0 everywhere, and capped at max_weight so a
    class seen a handful of times cannot dominate the loss. Unseen classes get 1.0.
    """
    weights: dict[str, list[float]] = {}
    for column, task in enumerate(SINGLE_LABEL_TASKS):
        counts = Counter(getattr(e, task) for e in examples if e.task_mask[column])
        weights[task] = _inverse_frequency(counts, len(label_maps[task]), max_weight)
    labeled = [e.aspects for e in examples if e.task_mask[2]]
    positives = np.asarray(labeled, dtype=np.float64).sum(axis=0) if labeled else np.zeros(len(label_maps["aspects"]))
    weights["aspects"] = [
        min(max_weight, (len(labeled) - p) / p) if p > 0 else 1.0 for p in positives.tolist()
    ]
    return weights


def source_class_weights(
    examples: Sequence[Example], label_maps: dict[str, list[str]], max_weight: float
) -> dict[str, dict[str, list[float]]]:
    """`{source: {task: weight per class}}` for sentiment and intent, balanced within each source.

    Sources disagree about which class is rare: star-rated reviews are mostly positive, airline
    complaints mostly negative. Weights over the pooled set then favour each source's majority
    class (the pooled-rare class is the other source's common one). Counting within a source
    balances its own classes. Only the classes a source has count in the denominator, so (below
    the cap) its weights average 1.0 over its rows and the source keeps its share of the loss.
    """
    counts: dict[str, dict[str, Counter]] = {}
    for example in examples:
        for column, task in enumerate(SINGLE_LABEL_TASKS):
            if example.task_mask[column]:
                counts.setdefault(example.source, {}).setdefault(task, Counter())[getattr(example, task)] += 1
    return {
        source: {
            task: _inverse_frequency(task_counts, len(label_maps[task]), max_weight, n_classes=len(task_counts))
            for task, task_counts in by_task.items()
        }
        for source, by_task in counts.items()
    }


def attach_source_class_weights(examples: Sequence[Example], weights: dict[str, dict[str, list[float]]]) -> None:
    """Set each example's `class_weights` from its source's table (1.0 for unknown sources/tasks)."""
    for example in examples:
        by_task = weights.get(example.source, {})
        example.class_weights = [
            by_task[task][getattr(example, task)] if example.task_mask[column] and task in by_task else 1.0
            for column, task in enumerate(SINGLE_LABEL_TASKS)
        ]


def epoch_indices(
    examples: Sequence[Example], source_weights: dict[str, float], rng: np.random.Generator
) -> list[int]:
    """Indices to train on this epoch: each source repeated/subsampled by its weight.

    A weight of 2.5 takes every row of the source twice plus a random half; 0.3 takes a
    random 30%. Sources without a weight count once.
    """
    by_source: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        by_source.setdefault(example.source, []).append(index)
    chosen: list[int] = []
    for source in sorted(by_source):
        indices = by_source[source]
        weight = float(source_weights.get(source, 1.0))
        if weight < 0:
            raise ValueError(f"source weight of {source!r} is negative ({weight})")
        whole, fraction = int(math.floor(weight)), weight - math.floor(weight)
        chosen.extend(indices * whole)
        extra = int(round(fraction * len(indices)))
        if extra:
            chosen.extend(rng.choice(indices, size=extra, replace=False).tolist())
    return chosen


def length_grouped_batches(
    indices: Sequence[int], lengths: Sequence[int], batch_size: int, group_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Shuffle, sort within chunks of `group_size` batches by length, cut batches, shuffle them.

    The longest batch goes first so an out-of-memory shows up at step 1, not hours in.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = [indices[i] for i in rng.permutation(len(indices))]
    chunk = max(1, batch_size * max(1, group_size))
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    if not batches:
        return batches
    batches = [batches[i] for i in rng.permutation(len(batches))]
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    batches.insert(0, batches.pop(longest))
    return batches


def sorted_batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Evaluation batches: length-sorted (least padding), deterministic."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(examples: Iterable[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest row; labels, multi-hot aspects and task masks as tensors."""
    rows = list(examples)
    width = max(len(e) for e in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    with_types = rows[0].token_type_ids is not None
    types = torch.zeros((len(rows), width), dtype=torch.long) if with_types else None
    for row, example in enumerate(rows):
        length = len(example)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        attention[row, :length] = 1
        if types is not None:
            types[row, :length] = torch.tensor(example.token_type_ids)
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "sentiment_labels": torch.tensor([e.sentiment for e in rows], dtype=torch.long),
        "intent_labels": torch.tensor([e.intent for e in rows], dtype=torch.long),
        "aspect_labels": torch.tensor([e.aspects for e in rows], dtype=torch.float32),
        "task_mask": torch.tensor([e.task_mask for e in rows], dtype=torch.float32),
    }
    if types is not None:
        batch["token_type_ids"] = types
    if rows[0].class_weights is not None:
        batch["class_weight_rows"] = torch.tensor([e.class_weights for e in rows], dtype=torch.float32)
    if any(e.teacher is not None for e in rows):
        batch.update(collate_teacher(rows))
    return batch


class ExampleDataset(torch.utils.data.Dataset):
    """Map-style view for Hugging Face's Trainer (the benchmark baseline)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]
