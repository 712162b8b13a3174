"""The correction record contract: a reviewer's corrected labels for one feedback item.

Monitoring records corrections (`monitoring.corrections`: stores, counting, the retraining
event); processing applies them to the labels of the next training data
(`processing.feature_engineering`, pass 2). The record itself lives here, in the first layer
that needs it, because processing may not import monitoring (docs/contracts.md).

Stored format (unchanged by this module): one JSON object per correction, as JSON lines
(`<prefix>/yyyy/mm/dd/<HH>.jsonl`, the local object store) or one `.json` object each
(`<prefix>/yyyy/mm/dd/<correction_id>.json`, S3). `<prefix>/_state/` holds markers, never
corrections. `read_corrections` reads both layouts and returns every record it could not
use together with the reason, so nothing a reviewer wrote is dropped silently.

The training marker (`_state/last_training.json`, `training_marker`) is part of this contract
too: the merge job writes it when it reads the corrections into the training labels, and
monitoring counts the corrections it does not cover towards the next retrain. It records what
was consumed (`Watermark`: the newest `created_at` read, and the ids read at that instant), not
a wall-clock time: on SageMaker the corrections are copied in before the job starts, so a
correction recorded between the copy and the read is dated before any clock reading the job
could take, yet was never read; only a watermark of what was read leaves it counting as new.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from processing.schema import TASKS, model_input_text
from processing.taxonomy import load_taxonomy
from processing.taxonomy_mapping import TaxonomyMappingError, remap_labels, unmapped_labels

logger = logging.getLogger(__name__)

STATE_DIR = "_state"
"""Folder of markers (last training, threshold events) beside the corrections; never read as corrections."""
LAST_TRAINING_MARKER = "last_training.json"
"""`<prefix>/_state/last_training.json`: where the current counting period starts (training_marker layout).
Corrections it does not cover (`Watermark.from_marker`) count towards the next retrain (monitoring.corrections).
The merge job writes it when it reads the corrections into the training labels (feature_engineering
--corrections-state-dir)."""
MARKER_TIME = "at"
"""When the period started (ISO 8601, UTC): names the period, and dates it for markers without a watermark."""
MARKER_WATERMARK = "watermark"
"""`created_at` (ISO 8601, UTC) of the newest correction the run read; null when it read none. Its presence
(even null) marks a marker that records what was consumed; markers without it fall back to MARKER_TIME."""
MARKER_WATERMARK_IDS = "watermark_ids"
"""correction_ids of the corrections read whose created_at equals the watermark (sorted): others recorded at
the same instant were not read and still count."""
CORRECTION_SUFFIXES = (".jsonl", ".json")
"""JSON lines (local object store) and one JSON object per file (S3 layout)."""

# Reason codes of corrections that cannot be used (stable strings: reports and tests key on them).
INVALID_JSON = "invalid_json"
INVALID_FIELDS = "invalid_fields"
EMPTY_FEEDBACK_ID = "empty_feedback_id"
EMPTY_REVIEWER = "empty_reviewer"
NO_LABELS = "no_labels"
UNKNOWN_TASK = "unknown_task"
UNKNOWN_LABEL = "unknown_label"
UNKNOWN_TAXONOMY = "unknown_taxonomy_version"
INVALID_TIMESTAMP = "invalid_timestamp"
TAXONOMY_MISMATCH = "taxonomy_version_mismatch"
"""A correction of another taxonomy version than the run's, with no chain of mapping files leading from it to the
run's version (e.g. a newer version than the run's: mappings only go forward)."""
UNMAPPABLE_LABEL = "unmappable_label"
"""A correction of an older taxonomy version naming a label the run's version has no counterpart for."""


class CorrectionError(ValueError):
    """A correction that cannot be recorded or applied (unknown label, no labels, missing reviewer)."""

    def __init__(self, message: str, reason: str = INVALID_FIELDS):
        super().__init__(message)
        self.reason = reason


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Correction:
    feedback_id: str
    reviewer: str
    labels: dict[str, Any]
    """Corrected labels by task: sentiment / intent (a label), aspects (a list of aspects)."""
    created_at: str = field(default_factory=_now)
    correction_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    note: str = ""
    taxonomy_version: str = "1"

    def validate(self) -> "Correction":
        """Raise CorrectionError (with a reason code) unless the correction fits its taxonomy version."""
        for name in ("feedback_id", "reviewer", "created_at", "correction_id", "note", "taxonomy_version"):
            if not isinstance(getattr(self, name), str):
                raise CorrectionError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not self.feedback_id.strip():
            raise CorrectionError("feedback_id is empty", EMPTY_FEEDBACK_ID)
        if not self.reviewer.strip():
            raise CorrectionError("reviewer is empty: every correction names who made it", EMPTY_REVIEWER)
        if not isinstance(self.labels, dict):
            raise CorrectionError(f"labels must be an object of task -> label, got {self.labels!r}")
        if not self.labels:
            raise CorrectionError("a correction needs at least one corrected label", NO_LABELS)
        try:
            taxonomy = load_taxonomy(self.taxonomy_version)
        except ValueError as error:
            raise CorrectionError(str(error), UNKNOWN_TAXONOMY) from None
        allowed = {"sentiment": taxonomy.sentiments, "intent": taxonomy.intents}
        for task, value in self.labels.items():
            if task not in TASKS:
                raise CorrectionError(f"unknown task {task!r}; tasks are {list(TASKS)}", UNKNOWN_TASK)
            if task == "aspects":
                if not isinstance(value, list) or any(a not in taxonomy.aspect_names for a in value):
                    raise CorrectionError(f"aspects must be a list of {list(taxonomy.aspect_names)}, got {value!r}",
                                          UNKNOWN_LABEL)
            elif not isinstance(value, str) or value not in allowed[task]:
                raise CorrectionError(f"{task}={value!r} is not in taxonomy v{taxonomy.version}: {list(allowed[task])}",
                                      UNKNOWN_LABEL)
        parse_timestamp(self.created_at)
        return self

    def order_key(self) -> tuple[datetime, str]:
        """Which of two corrections of the same task wins: the later created_at, then the larger correction_id."""
        return parse_timestamp(self.created_at), self.correction_id


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 (a trailing Z allowed) as an aware datetime; naive values are taken as UTC."""
    if not isinstance(value, str):
        raise CorrectionError(f"timestamp {value!r} is not an ISO 8601 string", INVALID_TIMESTAMP)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CorrectionError(f"timestamp {value!r} is not ISO 8601", INVALID_TIMESTAMP) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def training_marker(at: datetime, consumed: Optional["Watermark"] = None, **details: Any) -> dict[str, Any]:
    """The LAST_TRAINING_MARKER document: `{"at": ISO 8601 UTC, "watermark": ..., "watermark_ids": [...],
    **details}` (details are for people). Without `consumed` the marker has no watermark and readers count by
    `at` (starting a period by hand: everything before `at` is covered). A naive `at` is taken as UTC."""
    moment = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return {MARKER_TIME: moment.astimezone(timezone.utc).isoformat(),
            **(consumed.marker_fields() if consumed is not None else {}), **details}


def marker_time(marker: Optional[dict[str, Any]]) -> Optional[datetime]:
    """When the counting period of a training marker starts (None without a marker)."""
    return parse_timestamp(marker[MARKER_TIME]) if marker else None


def write_training_marker(state_dir: Path, at: datetime, consumed: Optional["Watermark"] = None,
                          **details: Any) -> Path:
    """Write LAST_TRAINING_MARKER into `state_dir` (the folder that becomes `<prefix>/_state/`).

    `consumed`: what the run read (`CorrectionIndex.consumed`). Without it the marker has only `at`, and
    readers count corrections created after `at` (starting a period by hand)."""
    if consumed is None:
        logger.warning("training marker without a watermark: readers will count corrections created after %s",
                       at.isoformat())
    path = Path(state_dir) / LAST_TRAINING_MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(training_marker(at, consumed, **details), indent=2, sort_keys=True), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Watermark:
    """How far a training run consumed the corrections: those created before `through`, and those created at
    `through` whose id is in `ids`. Everything else recorded in the store counts as new.

    Comparing with what was read, not with a clock, is what keeps a correction recorded after SageMaker copied
    the corrections in (but before the job read them) counting towards the next retrain. Residual gap: a
    correction that reaches the store after the copy with a created_at older than the watermark (a slow or
    back-dated upload) is covered though unread; the next merge still applies it (it reads everything)."""

    through: Optional[datetime]
    """created_at of the newest correction read; None when none was read (nothing is covered)."""
    ids: frozenset[str] = frozenset()
    ties_covered: bool = False
    """True for old markers (only `at`): everything created at or before `through` is covered, as they counted."""

    @classmethod
    def of(cls, corrections: Iterable[Correction], not_after: Optional[datetime] = None) -> "Watermark":
        """The watermark of the corrections read (those whose created_at cannot be read are left out: no run can
        apply them, and counting skips them too).

        `not_after` (the time of reading): corrections dated later are left out too. One future-dated record
        (a writer's clock ahead) would otherwise lift the watermark past every correction recorded until that
        date, and none would count towards a retrain; left out, it only counts once more in the next period."""
        stamped = []
        for correction in corrections:
            try:
                moment = parse_timestamp(correction.created_at)
            except CorrectionError:
                continue
            if not_after is None or moment <= not_after:
                stamped.append((moment, correction.correction_id))
        if not stamped:
            return cls(None)
        through = max(moment for moment, _ in stamped)
        return cls(through, frozenset(str(cid) for moment, cid in stamped if moment == through))

    @classmethod
    def from_marker(cls, marker: Optional[dict[str, Any]]) -> Optional["Watermark"]:
        """The watermark a LAST_TRAINING_MARKER records; its `at` (ties covered) for markers written before
        watermarks; None without a marker (every correction is new)."""
        if not marker:
            return None
        if MARKER_WATERMARK not in marker:
            return cls(parse_timestamp(marker[MARKER_TIME]), ties_covered=True)
        through = marker[MARKER_WATERMARK]
        return cls(parse_timestamp(through) if through is not None else None,
                   frozenset(marker.get(MARKER_WATERMARK_IDS) or ()))

    def covers(self, correction: Correction) -> bool:
        """Whether the run that wrote the marker consumed `correction` (so it no longer counts towards a retrain).
        One whose created_at cannot be read is covered: no run can apply it (invalid_timestamp)."""
        try:
            moment = parse_timestamp(correction.created_at)
        except CorrectionError:
            return True
        if self.through is None or moment > self.through:
            return False
        return moment < self.through or self.ties_covered or correction.correction_id in self.ids

    def marker_fields(self) -> dict[str, Any]:
        """The MARKER_WATERMARK / MARKER_WATERMARK_IDS fields of a training marker."""
        through = self.through.astimezone(timezone.utc).isoformat() if self.through else None
        return {MARKER_WATERMARK: through, MARKER_WATERMARK_IDS: sorted(self.ids)}


_FIELD_NAMES = frozenset(f.name for f in fields(Correction))


def correction_from_json(payload: str | bytes) -> Correction:
    """One stored correction (a JSON object) -> Correction; CorrectionError when it is not one. Not validated."""
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorrectionError(f"not JSON: {error}", INVALID_JSON) from None
    if not isinstance(data, dict):
        raise CorrectionError(f"a correction is a JSON object, got {type(data).__name__}", INVALID_FIELDS)
    unknown = sorted(set(data) - _FIELD_NAMES)
    if unknown:
        raise CorrectionError(f"unknown fields {unknown}", INVALID_FIELDS)
    try:
        return Correction(**data)
    except TypeError as error:  # a required field is missing
        raise CorrectionError(str(error), INVALID_FIELDS) from None


@dataclass
class InvalidCorrection:
    """A stored correction that could not be used, and why (kept for a person to fix, never dropped)."""

    source: str
    """`<file relative to the corrections folder>:<line>` (line 1 for a .json object)."""
    reason: str
    message: str
    payload: str
    feedback_id: Optional[str] = None
    correction_id: Optional[str] = None


@dataclass
class CorrectionsRead:
    corrections: list[Correction] = field(default_factory=list)
    invalid: list[InvalidCorrection] = field(default_factory=list)
    watermark: Optional[Watermark] = None
    """Watermark of every record read that parsed as a correction, valid or not (counting counts them all);
    None when not read by read_corrections (then it is that of `corrections`)."""

    @property
    def total(self) -> int:
        return len(self.corrections) + len(self.invalid)


def correction_files(folder: Path) -> list[Path]:
    """Correction files under `folder` (sorted, recursive), markers under `_state/` left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in CORRECTION_SUFFIXES
                  and STATE_DIR not in p.relative_to(folder).parts)


def _payloads(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, decodable) of each stored correction in a file. Lines are split on bytes, so an
    undecodable line spoils only itself; its bytes stay visible as escapes in the text."""
    raw = path.read_bytes()
    chunks = [raw] if path.suffix == ".json" else raw.split(b"\n")
    for number, chunk in enumerate(chunks, start=1):
        if not chunk.strip():
            continue
        try:
            yield number, chunk.decode("utf-8"), True
        except UnicodeDecodeError:
            yield number, chunk.decode("utf-8", errors="backslashreplace"), False


def read_corrections(folder: Path, validate: bool = True) -> CorrectionsRead:
    """Every correction under `folder` (`*.jsonl` and `*.json`, `_state/` skipped); those that cannot be
    parsed (or, with `validate`, fail Correction.validate) are returned in `invalid` with their reason."""
    folder = Path(folder)
    result = CorrectionsRead()
    read_at = datetime.now(timezone.utc)
    parsed: list[Correction] = []
    for path in correction_files(folder):
        relative = path.relative_to(folder).as_posix()
        for number, payload, decodable in _payloads(path):
            source = f"{relative}:{number}"
            try:
                if not decodable:
                    raise CorrectionError("not UTF-8", INVALID_JSON)
                correction = correction_from_json(payload)
                parsed.append(correction)
                if validate:
                    correction.validate()
            except CorrectionError as error:
                result.invalid.append(_invalid(source, error, payload))
                continue
            result.corrections.append(correction)
    result.watermark = Watermark.of(parsed, not_after=read_at)
    return result


def _invalid(source: str, error: CorrectionError, payload: str) -> InvalidCorrection:
    """The unusable record, with its ids when the payload is at least a JSON object (to find it again)."""
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    ids = {name: data.get(name) if isinstance(data, dict) and isinstance(data.get(name), str) else None
           for name in ("feedback_id", "correction_id")}
    return InvalidCorrection(source, error.reason, str(error), payload, **ids)


# ---------------------------------------------------------------- applying corrections to silver (pass 2)
UNKNOWN_FEEDBACK_ID = "unknown_feedback_id"
UNMATCHED_FILE = "unmatched.jsonl"
INVALID_FILE = "invalid.jsonl"
APPLIED_FILE = "applied.jsonl"


@dataclass
class CorrectionOutcomes:
    """What became of every correction read: the counts go into the run report, the rows into the lake."""

    read: int = 0
    invalid: list[InvalidCorrection] = field(default_factory=list)
    applied: int = 0
    """Corrections that set at least one label of a silver row (the latest of their task)."""
    superseded: int = 0
    """Corrections of silver rows overridden, for every task they name, by a later correction."""
    unmatched: list[Correction] = field(default_factory=list)
    """Valid corrections whose feedback_id is not in this run's silver (unknown, or a duplicate, spam,
    quarantined record, or feedback of another run)."""
    mapped_from: dict[str, int] = field(default_factory=dict)
    """Corrections of an older taxonomy version whose labels were mapped to the run's, by version. Not an
    outcome of their own: each is also applied, superseded or unmatched, so the books are unchanged."""
    rows_corrected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASKS, 0))
    labels_changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASKS, 0))
    """Rows whose label for the task differs after the correction (or was not labeled before)."""
    tasks_added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TASKS, 0))
    """Rows for which a correction added the task to labeled_tasks."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """One audit row per (silver row, task) a correction set: previous and corrected label, correction_id."""

    def summary(self, source: Optional[str]) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for item in self.invalid:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        return {"source": source, "read": self.read, "applied": self.applied, "superseded": self.superseded,
                "unmatched": len(self.unmatched), "invalid": len(self.invalid), "invalid_reasons": reasons,
                "mapped": sum(self.mapped_from.values()), "mapped_from": dict(self.mapped_from),
                "rows_corrected": dict(self.rows_corrected), "labels_changed": dict(self.labels_changed),
                "tasks_added": dict(self.tasks_added)}


class CorrectionIndex:
    """The latest correction per (feedback_id, task), applied to silver tables part by part.

    The latest is the one with the greatest (created_at, correction_id), whatever its taxonomy version.
    Corrections of an older version than the run's are mapped to it (processing.taxonomy_mapping, with
    the row's text for the rules that split a label), so a reviewer's work survives a taxonomy release;
    those with a label the run's version cannot express, or of a version no mapping leads from, are
    kept as invalid (UNMAPPABLE_LABEL, TAXONOMY_MISMATCH)."""

    def __init__(self, read: CorrectionsRead, taxonomy_version: str):
        self.taxonomy_version = str(taxonomy_version)
        self.outcomes = CorrectionOutcomes(read=read.total, invalid=list(read.invalid))
        self.consumed = read.watermark or Watermark.of(read.corrections)
        """What this run consumed: the training marker's watermark (write_training_marker)."""
        self.corrections: dict[str, list[Correction]] = {}
        self._mapped: set[int] = set()
        for correction in read.corrections:
            version = str(correction.taxonomy_version)
            if version != self.taxonomy_version:
                try:
                    self._check_mappable(correction)
                except CorrectionError as error:
                    self.outcomes.invalid.append(InvalidCorrection(
                        f"correction {correction.correction_id}", error.reason, str(error),
                        json.dumps(correction.__dict__, ensure_ascii=False), correction.feedback_id,
                        correction.correction_id))
                    continue
                self._mapped.add(id(correction))
                self.outcomes.mapped_from[version] = self.outcomes.mapped_from.get(version, 0) + 1
            self.corrections.setdefault(correction.feedback_id, []).append(correction)
        self.latest: dict[str, dict[str, Correction]] = {}
        for feedback_id, items in self.corrections.items():
            winners: dict[str, Correction] = {}
            for correction in sorted(items, key=Correction.order_key):
                for task in correction.labels:
                    winners[task] = correction  # later ones overwrite earlier ones
            self.latest[feedback_id] = winners
        self._ids = None
        self._matched: set[str] = set()

    def _check_mappable(self, correction: Correction) -> None:
        """Raise CorrectionError unless every label of `correction` (an older taxonomy version) maps onto this
        run's version for any text; the message names the labels and both versions."""
        version = str(correction.taxonomy_version)
        try:
            missing = unmapped_labels(correction.labels, version, self.taxonomy_version)
        except TaxonomyMappingError as error:
            raise CorrectionError(f"labels {correction.labels} are in taxonomy v{version}; this run uses "
                                  f"v{self.taxonomy_version} and no mapping leads there: {error}",
                                  TAXONOMY_MISMATCH) from None
        if missing:
            raise CorrectionError(f"{', '.join(missing)} (taxonomy v{version}) has no counterpart in taxonomy "
                                  f"v{self.taxonomy_version}, which this run uses", UNMAPPABLE_LABEL)

    def labels_for(self, correction: Correction, text: str) -> dict[str, Any]:
        """The labels `correction` sets, in this run's taxonomy version (mapped with `text` when it is older)."""
        if id(correction) not in self._mapped:
            return correction.labels
        record = {"feedback_id": correction.feedback_id, "text": text,
                  "taxonomy_version": str(correction.taxonomy_version), **correction.labels}
        mapped = remap_labels(record, str(correction.taxonomy_version), self.taxonomy_version)
        return {task: mapped[task] for task in correction.labels}

    def apply(self, table):
        """The silver table with corrected labels (same rows, same order); untouched when no row matches."""
        # Imported here: monitoring imports this module for the record contract alone (its CLI stays light).
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.latest or table.num_rows == 0:
            return table
        if self._ids is None:
            self._ids = pa.array(sorted(self.latest), type=pa.string())
        hits = np.flatnonzero(pc.is_in(table.column("feedback_id"), value_set=self._ids)
                              .to_numpy(zero_copy_only=False))
        if not len(hits):
            return table
        ids = table.column("feedback_id").take(pa.array(hits)).to_pylist()
        columns = {name: table.column(name).to_pylist() for name in (*TASKS, "labeled_tasks")}
        texts = self._texts(table, pa.array(hits)) if self._mapped else None
        for position, (row, feedback_id) in enumerate(zip(hits.tolist(), ids)):
            self._matched.add(feedback_id)
            labeled = list(columns["labeled_tasks"][row] or [])
            mapped: dict[int, dict[str, Any]] = {}
            for task, correction in self.latest[feedback_id].items():
                if id(correction) in self._mapped and id(correction) not in mapped:
                    mapped[id(correction)] = self.labels_for(correction, texts[position])
                labels = mapped.get(id(correction), correction.labels)
                before, after = columns[task][row], labels[task]
                was_labeled = task in labeled
                columns[task][row] = list(after) if task == "aspects" else after
                self.outcomes.rows_corrected[task] += 1
                if not was_labeled:
                    labeled.append(task)
                    self.outcomes.tasks_added[task] += 1
                if not was_labeled or _label_differs(before, after, task):
                    self.outcomes.labels_changed[task] += 1
                change = {"feedback_id": feedback_id, "task": task, "previous": before, "was_labeled": was_labeled,
                          "corrected": after, "correction_id": correction.correction_id,
                          "corrected_at": correction.created_at}
                if id(correction) in mapped:
                    change["mapped_from"] = {"taxonomy_version": str(correction.taxonomy_version),
                                             "label": correction.labels[task]}
                self.outcomes.changes.append(change)
            columns["labeled_tasks"][row] = [task for task in TASKS if task in labeled]
        for name, values in columns.items():
            index = table.schema.get_field_index(name)
            table = table.set_column(index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type))
        return table

    @staticmethod
    def _texts(table, rows) -> list[str]:
        """What the mapping rules read for each row: the title and text, as the classifier reads them."""
        texts = table.column("text").take(rows).to_pylist()
        titles = (table.column("title").take(rows).to_pylist() if "title" in table.column_names
                  else [None] * len(texts))
        return [model_input_text(text or "", title) for text, title in zip(texts, titles)]

    def finish(self) -> CorrectionOutcomes:
        """Sort every valid correction into applied / superseded / unmatched (after the last part)."""
        outcomes = self.outcomes
        for feedback_id, items in self.corrections.items():
            if feedback_id not in self._matched:
                outcomes.unmatched.extend(items)
                continue
            winners = {id(c) for c in self.latest[feedback_id].values()}
            applied = sum(1 for c in items if id(c) in winners)
            outcomes.applied += applied
            outcomes.superseded += len(items) - applied
        return outcomes


def _label_differs(before: Any, after: Any, task: str) -> bool:
    if task == "aspects":
        return sorted(before or []) != sorted(after)
    return before != after


def write_outcomes(outcomes: CorrectionOutcomes, folder: Path) -> dict[str, int]:
    """`unmatched.jsonl` (reason unknown_feedback_id), `invalid.jsonl` (with reasons) and `applied.jsonl`
    (the label changes) under `folder`; files with no rows are not written. Returns rows per file."""
    from dataclasses import asdict

    rows = {
        UNMATCHED_FILE: [{"reason": UNKNOWN_FEEDBACK_ID,
                          "message": f"feedback_id {c.feedback_id!r} is not in this run's silver (unknown, or "
                                     "filtered as duplicate / spam / quarantined)",
                          "correction": asdict(c)} for c in outcomes.unmatched],
        INVALID_FILE: [asdict(item) for item in outcomes.invalid],
        APPLIED_FILE: outcomes.changes,
    }
    written = {}
    for name, items in rows.items():
        if items:
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / name).open("w", encoding="utf-8") as handle:
                for item in items:
                    handle.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
        written[name] = len(items)
    return written
