"""The example-file contract, read and checked row by row, without torch.

One reader and one row check for everyone who reads the train/validation/test example files
feature engineering writes: training (`training.data`), evaluation (`training.evaluate`) and the
monitor's baseline (`monitoring.baseline`, which runs where torch may not be installed). A row
that breaks the contract is quarantined with a reason, never dropped without a trace.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from processing.schema import TASKS, ReasonCode

logger = logging.getLogger(__name__)

EXAMPLE_FILE_PATTERN = "*.jsonl"


@dataclass
class QuarantinedRow:
    path: str
    line: int
    reason: str
    """A processing.schema.ReasonCode value."""
    message: str
    raw: str

    def as_record(self) -> dict[str, Any]:
        """The quarantine-file record of evaluation and the monitor baseline."""
        return {"file": self.path, "line": self.line, "reason": self.reason, "message": self.message, "raw": self.raw}


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




def read_example_records(
    location: str | Path, label_maps: Mapping[str, Sequence[str]], *, as_training_reads: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Evaluation's view of an example split -> (usable rows, quarantine records).

    `read_example_rows`, but rows labeled for no task are kept (evaluation predicts them, unscored;
    the monitor baseline describes them) and a repeated feedback_id is not quarantined. With
    `as_training_reads` (the training split the TF-IDF baseline is fitted on) rows are read exactly
    as training read them: the same rows the model learned from. Usable rows are the JSON objects,
    every column kept; a quarantine record is `QuarantinedRow.as_record()`.
    """
    rows, quarantined, _ = read_example_rows(location, label_maps, keep_unlabeled=not as_training_reads,
                                             quarantine_duplicate_ids=as_training_reads)
    return rows, [q.as_record() for q in quarantined]
