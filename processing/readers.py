"""Streaming readers for CSV, JSON lines and Parquet input, in bounded chunks.

Every physical input record comes out as either a `RawRecord` (a dict in FeedbackRecord
shape, plus the payload exactly as received for bronze) or a `BadRecord` (undecodable
bytes, invalid JSON) carrying a reason code: nothing raises, nothing is dropped.
A generic `ColumnMapping` renames arbitrary columns onto our fields and adds constants
(channel, source), so any CSV / JSONL / Parquet export can be fed without code.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from processing.schema import ReasonCode

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUPPORTED_SUFFIXES = JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES

# csv's default field limit (128 KiB) would raise on a long review; quarantine judges length.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class ColumnMapping:
    """How a foreign table maps onto FeedbackRecord fields."""

    fields: dict[str, str] = field(default_factory=dict)
    """our_field -> their column name; unmapped columns are dropped when any mapping is given."""
    constants: dict[str, Any] = field(default_factory=dict)
    """our_field -> fixed value for every row (e.g. channel, source, created_at)."""
    derive_feedback_id: bool = False
    """When the row has no feedback_id, make one from source, file name and line number."""
    empty_as_null: bool = True
    """Empty strings (CSV's only way to say 'missing') become None."""

    @classmethod
    def from_json(cls, text: str) -> "ColumnMapping":
        """Parse `{"fields": {...}, "constants": {...}, "derive_feedback_id": true}`."""
        raw = json.loads(text)
        unknown = set(raw) - {"fields", "constants", "derive_feedback_id", "empty_as_null"}
        if unknown:
            raise ValueError(f"column mapping has unknown keys {sorted(unknown)}")
        return cls(**raw)

    def apply(self, row: dict[str, Any], source_file: str, line_no: int) -> dict[str, Any]:
        if not (self.fields or self.constants or self.derive_feedback_id):
            # Identity mapping (our own JSONL): one pass instead of three dict copies per row.
            if self.empty_as_null:
                return {k: v for k, v in row.items() if v is not None and v != ""}
            return dict(row)
        if self.fields:
            record = {ours: row.get(theirs) for ours, theirs in self.fields.items()}
        else:
            record = dict(row)
        if self.empty_as_null:
            record = {k: (None if v == "" else v) for k, v in record.items()}
            record = {k: v for k, v in record.items() if v is not None}
        for key, value in self.constants.items():
            if record.get(key) is None:
                record[key] = value
        if self.derive_feedback_id and not record.get("feedback_id"):
            record["feedback_id"] = f"{record.get('source', 'input')}-{_file_stem(source_file)}-{line_no}"
        return record


@functools.lru_cache(maxsize=1024)
def _file_stem(source_file: str) -> str:
    """Path(source_file).stem, once per file rather than once per row (a Path costs ~25 us)."""
    return Path(source_file).stem


IDENTITY = ColumnMapping()


@dataclass
class RawRecord:
    """One parsed input record (not yet validated)."""

    record: Any
    """The parsed object (normally a dict); validation decides whether it is a FeedbackRecord."""
    payload: str
    """The record as received (JSON text of the line or row), kept in bronze."""
    source_file: str
    line_no: int
    """1-based line (JSONL), data row (CSV) or row (Parquet) number."""
    parsed: bool = True
    """False for a JSON line read with `parse=False`: `record` is None until `parse_item` decodes it
    (the job decodes in its worker processes: shipping text to a worker is cheaper than shipping dicts)."""


@dataclass
class BadRecord:
    """An input record that could not even be parsed."""

    raw: Union[bytes, str]
    reason: str
    """A processing.schema.ReasonCode value."""
    message: str
    source_file: str
    line_no: int

    @property
    def payload(self) -> str:
        if isinstance(self.raw, bytes):
            return self.raw.decode("utf-8", errors="backslashreplace")
        return self.raw


InputItem = Union[RawRecord, BadRecord]


def list_input_files(path: Union[str, Path]) -> list[Path]:
    """The file itself, or every supported file under a folder (recursive, sorted)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input {root} is neither a file nor a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    skipped = sorted(p.name for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in SUPPORTED_SUFFIXES)
    if skipped:
        log.warning("ignoring %d input files with unsupported suffixes: %s", len(skipped), skipped[:10])
    return files


def iter_jsonl(path: Path, mapping: ColumnMapping = IDENTITY, parse: bool = True) -> Iterator[InputItem]:
    """One item per non-blank line; bytes are decoded strictly so bad UTF-8 is caught per line.

    With `parse=False` valid UTF-8 lines come out unparsed (finish them with `parse_item`).
    """
    name = str(path)
    with open(path, "rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            line = raw_line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRecord(line, ReasonCode.invalid_utf8.value,
                                f"byte {exc.start}: {exc.reason} (line is not valid UTF-8)", name, line_no)
                continue
            item = RawRecord(None, text, name, line_no, parsed=False)
            yield parse_item(item, mapping) if parse else item


def parse_item(item: InputItem, mapping: ColumnMapping = IDENTITY) -> InputItem:
    """Decode an unparsed JSON line (RawRecord with parsed=False); anything else is returned as is."""
    if not isinstance(item, RawRecord) or item.parsed:
        return item
    try:
        obj = json.loads(item.payload)
    except json.JSONDecodeError as exc:
        return BadRecord(item.payload, ReasonCode.invalid_json.value, f"invalid JSON: {exc.msg} at column {exc.colno}",
                         item.source_file, item.line_no)
    record = mapping.apply(obj, item.source_file, item.line_no) if isinstance(obj, dict) else obj
    return RawRecord(record, item.payload, item.source_file, item.line_no)


def iter_csv(path: Path, mapping: ColumnMapping = IDENTITY) -> Iterator[InputItem]:
    """One item per data row; undecodable bytes survive as surrogates and make a BadRecord."""
    name = str(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, "rb") as binary:
        text_stream = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text_stream, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        for row_no, row in enumerate(reader, start=1):
            if not row:
                continue
            joined = "\x1f".join(row)
            try:
                if not joined.isascii():  # undecodable bytes are non-ASCII surrogates
                    joined.encode("utf-8")
            except UnicodeEncodeError:
                raw = delimiter.join(row).encode("utf-8", errors="surrogateescape")
                yield BadRecord(raw, ReasonCode.invalid_utf8.value, "row is not valid UTF-8", name, row_no)
                continue
            if len(row) != len(header):
                payload = json.dumps(row, ensure_ascii=False)
                yield BadRecord(payload, ReasonCode.invalid_value.value,
                                f"row has {len(row)} columns, the header has {len(header)}", name, row_no)
                continue
            as_dict = dict(zip(header, row))
            yield RawRecord(mapping.apply(as_dict, name, row_no), json.dumps(as_dict, ensure_ascii=False),
                            name, row_no)


def iter_parquet(path: Path, mapping: ColumnMapping = IDENTITY, batch_rows: int = 10_000) -> Iterator[InputItem]:
    import pyarrow.parquet as pq

    name = str(path)
    row_no = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            row_no += 1
            payload = json.dumps(row, ensure_ascii=False, default=str)
            yield RawRecord(mapping.apply(row, name, row_no), payload, name, row_no)


def iter_file(path: Path, mapping: ColumnMapping = IDENTITY, batch_rows: int = 10_000,
              parse: bool = True) -> Iterator[InputItem]:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return iter_jsonl(path, mapping, parse)
    if suffix in CSV_SUFFIXES:
        return iter_csv(path, mapping)
    if suffix in PARQUET_SUFFIXES:
        return iter_parquet(path, mapping, batch_rows)
    raise ValueError(f"unsupported input file {path}: expected one of {SUPPORTED_SUFFIXES}")


def iter_chunks(items: Iterator[InputItem], chunk_rows: int) -> Iterator[list[InputItem]]:
    """Group a stream into lists of at most chunk_rows items."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    chunk: list[InputItem] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= chunk_rows:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_chunks(path: Union[str, Path], chunk_rows: int, mapping: Optional[ColumnMapping] = None,
                files: Optional[list[Path]] = None, parse: bool = True) -> Iterator[list[InputItem]]:
    """Stream every record of a file or folder (or of the given files) in chunks.

    `parse=False` leaves JSON lines undecoded (see `parse_item`); CSV and Parquet rows are always parsed.
    """
    mapping = mapping or IDENTITY
    chosen = files if files is not None else list_input_files(path)

    def items() -> Iterator[InputItem]:
        for file_path in chosen:
            log.info("reading %s", file_path)
            yield from iter_file(Path(file_path), mapping, chunk_rows, parse)

    return iter_chunks(items(), chunk_rows)
