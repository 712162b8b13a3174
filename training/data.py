"""Training data: example files -> validated, tokenised examples -> padded batches.

Reads the `examples.jsonl` files feature engineering writes into each channel folder, keeps
rows that are usable and quarantines the rest with a reason (nothing is dropped silently; the
one reader and row check, shared with `training.evaluate`), tokenises once, mixes the labeled
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

from processing.schema import TASKS, ReasonCode, example_model_input
from training.model import SINGLE_LABEL_TASKS

logger = logging.getLogger(__name__)

EXAMPLE_FILE_PATTERN = "*.jsonl"
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

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class QuarantinedRow:
    path: str
    line: int
    reason: str
    """A processing.schema.ReasonCode value."""
    message: str
    raw: str


@dataclass
class ExampleSet:
    examples: list[Example]
    quarantined: list[QuarantinedRow]
    unlabeled: int = 0
    """Valid rows labeled for no task (they cannot contribute to any loss)."""


class ExampleError(ValueError):
    def __init__(self, reason: ReasonCode, message: str):
        super().__init__(message)
        self.reason = reason


RAW_CHARS = 2000
"""A quarantined row keeps at most this many characters of its line."""


def check_example_row(raw: Any, label_maps: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """One decoded example row, checked against the example-file contract (schema.EXAMPLE_COLUMNS).

    Returns the row itself with `source` filled in ("unknown" when missing or empty); raises
    ExampleError with the first problem found. A row labeled for no task is valid.
    """
    if not isinstance(raw, dict):
        raise ExampleError(ReasonCode.wrong_type, f"a row must be a JSON object, got {type(raw).__name__}")
    text = raw.get("text")
    if text is None:
        raise ExampleError(ReasonCode.missing_field, "text is missing")
    if not isinstance(text, str):
        raise ExampleError(ReasonCode.wrong_type, f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ExampleError(ReasonCode.text_empty, "text is empty")
    title = raw.get("title")
    if title is not None and not isinstance(title, str):
        raise ExampleError(ReasonCode.wrong_type, f"title must be a string or null, got {type(title).__name__}")
    tasks = raw.get("labeled_tasks") or []
    if not isinstance(tasks, list):
        raise ExampleError(ReasonCode.wrong_type, "labeled_tasks must be a list")
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ExampleError(ReasonCode.unknown_label, f"labeled_tasks has unknown tasks {unknown}; tasks are {list(TASKS)}")
    for task in ("sentiment", "intent"):
        if task not in tasks:
            continue
        value = raw.get(task)
        if value is None:
            raise ExampleError(ReasonCode.missing_field, f"labeled_tasks names {task} but {task} is null")
        if value not in label_maps[task]:
            raise ExampleError(ReasonCode.unknown_label, f"{task}={value!r} is not one of {list(label_maps[task])}")
    if "aspects" in tasks:
        aspects = raw.get("aspects")
        if not isinstance(aspects, list):
            raise ExampleError(ReasonCode.wrong_type, f"labeled_tasks names aspects but aspects is {aspects!r}, not a list")
        for aspect in aspects:
            if aspect not in label_maps["aspects"]:
                raise ExampleError(
                    ReasonCode.unknown_label, f"aspect {aspect!r} is not one of {list(label_maps['aspects'])}"
                )
    raw["source"] = str(raw.get("source") or "unknown")
    return raw


def _decode_line(raw_bytes: bytes) -> Any:
    try:
        return json.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ExampleError(ReasonCode.invalid_utf8, str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ExampleError(ReasonCode.invalid_json, str(exc)) from None


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


def example_files(location: str | Path) -> list[Path]:
    """The `*.jsonl` files under a channel folder (sorted), or `location` itself when it is a file."""
    location = Path(location)
    if location.is_file():
        return [location]
    if not location.is_dir():
        raise FileNotFoundError(f"channel folder {location} does not exist")
    files = sorted(p for p in location.rglob(EXAMPLE_FILE_PATTERN) if p.is_file())
    if not files:
        raise FileNotFoundError(f"channel folder {location} holds no {EXAMPLE_FILE_PATTERN} files")
    return files


def read_example_rows(
    location: str | Path,
    label_maps: Mapping[str, Sequence[str]],
    *,
    keep_unlabeled: bool,
    quarantine_duplicate_ids: bool,
) -> tuple[list[dict[str, Any]], list[QuarantinedRow], int]:
    """Every example file under `location` (or the file itself), checked row by row: the one
    reader training and evaluation share.

    Returns (accepted rows as dicts, every column kept; quarantined rows with a reason; rows
    labeled for no task that were left out). Blank lines are skipped; nothing else is dropped
    without a trace.

    keep_unlabeled: keep rows labeled for no task (evaluation predicts them, unscored); when
        False they are only counted (training: they cannot contribute to any loss).
    quarantine_duplicate_ids: quarantine a kept row whose non-empty feedback_id an earlier kept
        row had (`duplicate_id`), so no row counts twice (training).
    """
    rows: list[dict[str, Any]] = []
    quarantined: list[QuarantinedRow] = []
    unlabeled = 0
    seen: set[str] = set()
    for path in example_files(location):
        with open(path, "rb") as handle:
            for number, raw_bytes in enumerate(handle, start=1):
                if not raw_bytes.strip():
                    continue
                try:
                    row = check_example_row(_decode_line(raw_bytes), label_maps)
                    if not row.get("labeled_tasks") and not keep_unlabeled:
                        unlabeled += 1
                        continue
                    feedback_id = str(row.get("feedback_id") or "")
                    if quarantine_duplicate_ids and feedback_id:
                        if feedback_id in seen:
                            raise ExampleError(ReasonCode.duplicate_id, f"feedback_id {feedback_id} seen before")
                        seen.add(feedback_id)
                except ExampleError as exc:
                    line = raw_bytes.decode("utf-8", errors="replace").rstrip("\n")
                    quarantined.append(QuarantinedRow(str(path), number, exc.reason.value, str(exc), line[:RAW_CHARS]))
                    continue
                rows.append(row)
    logger.log(
        logging.WARNING if quarantined else logging.INFO,
        "read %d example rows from %s (labeled per task %s, per source %s); %d quarantined %s, "
        "%d labeled for no task left out",
        len(rows), location, dict(Counter(task for row in rows for task in set(row.get("labeled_tasks") or []))),
        dict(Counter(row["source"] for row in rows)), len(quarantined),
        dict(Counter(q.reason for q in quarantined)), unlabeled,
    )
    return rows, quarantined, unlabeled


def read_examples(channel_dir: str | Path, label_maps: Mapping[str, Sequence[str]]) -> ExampleSet:
    """Training's view of a channel: rows labeled for at least one task, feedback ids unique."""
    rows, quarantined, unlabeled = read_example_rows(
        channel_dir, label_maps, keep_unlabeled=False, quarantine_duplicate_ids=True
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
    return batch


class ExampleDataset(torch.utils.data.Dataset):
    """Map-style view for Hugging Face's Trainer (the benchmark baseline)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]
