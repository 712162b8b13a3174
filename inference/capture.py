"""Data capture in SageMaker's format, written off the request path, and its reader.

On SageMaker the platform captures requests itself (the endpoint config's
DataCaptureConfig); this writer emulates it for the local endpoint, with the same record
shape and key layout so the monitor reads both alike:

    <root>/<endpoint>/<variant>/yyyy/mm/dd/hh/<uuid>.jsonl

one JSON object a line:

    {"captureData": {"endpointInput":  {"observedContentType", "mode": "INPUT",  "data", "encoding"},
                     "endpointOutput": {"observedContentType", "mode": "OUTPUT", "data", "encoding"}},
     "eventMetadata": {"eventId", "inferenceTime"}, "eventVersion": "0"}

`encoding` is JSON or CSV for those content types (data is the body as text) and BASE64
otherwise. Requests are sampled (`sampling_percentage`); captured ones go through a bounded
queue to one writer thread, and when the queue is full the record is dropped and counted
(`dropped`, also on /metrics) rather than slowing the request.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import logging
import queue
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from inference.codec import (CSV, JSONLINES, RESPONSE_TYPES, RequestError, media_type, parse_predictions, parse_texts,
                             render, request_format)

logger = logging.getLogger(__name__)

EVENT_VERSION = "0"
ENCODINGS = {"application/json": "JSON", "application/jsonlines": "JSON", "text/csv": "CSV"}
CAPTURE_SUFFIX = ".jsonl"
DROP_LOG_EVERY = 100
"""Log a warning on the first dropped record and then every this many."""
_STOP = object()


class CaptureFormatError(ValueError):
    """A captured line that is not a SageMaker capture record."""


def encode_payload(body: bytes, content_type: str, mode: str) -> dict[str, str]:
    encoding = ENCODINGS.get(content_type.split(";", 1)[0].strip().lower(), "BASE64")
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"
    if encoding == "BASE64":
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def decode_payload(payload: dict[str, Any]) -> bytes:
    """The captured body as bytes, whatever its encoding."""
    if payload.get("encoding") == "BASE64":
        return base64.b64decode(payload["data"])
    return str(payload["data"]).encode("utf-8")


def capture_record(
    input_body: bytes, input_type: str, output_body: bytes, output_type: str, event_id: str, inference_time: datetime
) -> dict[str, Any]:
    return {
        "captureData": {
            "endpointInput": encode_payload(input_body, input_type, "INPUT"),
            "endpointOutput": encode_payload(output_body, output_type, "OUTPUT"),
        },
        "eventMetadata": {"eventId": event_id, "inferenceTime": inference_time.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "eventVersion": EVENT_VERSION,
    }


def capture_prefix(root: Path, endpoint: str, variant: str, when: datetime) -> Path:
    """SageMaker's key layout: <root>/<endpoint>/<variant>/yyyy/mm/dd/hh."""
    return Path(root) / endpoint / variant / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}" / f"{when:%H}"


@dataclass
class CaptureWriter:
    """Samples requests and appends them to hourly capture files from a background thread."""

    root: Path
    endpoint_name: str = "feedback-brain"
    variant_name: str = "AllTraffic"
    sampling_percentage: float = 100.0
    queue_size: int = 1000
    max_records_per_file: int = 1000
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    rng: random.Random = field(default_factory=random.Random)
    sampled_out: int = 0
    dropped: int = 0
    written: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sampling_percentage <= 100.0:
            raise ValueError(f"sampling_percentage must be within 0-100, got {self.sampling_percentage}")
        self.root = Path(self.root)
        self._queue: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._file_prefix: Path | None = None
        self._file_records = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        logger.info("data capture closed: %d written, %d sampled out, %d dropped", self.written, self.sampled_out, self.dropped)

    def capture(self, input_body: bytes, input_type: str, output_body: bytes, output_type: str) -> bool:
        """Queue one request/response pair if sampled; True when queued. Never blocks."""
        if self.rng.random() * 100.0 >= self.sampling_percentage:
            self.sampled_out += 1
            return False
        record = capture_record(input_body, input_type, output_body, output_type, str(uuid.uuid4()), self.clock())
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.dropped % DROP_LOG_EVERY == 1:
                logger.warning("data capture queue full (%d): %d records dropped so far", self.queue_size, self.dropped)
            return False
        return True

    def _target(self, record: dict[str, Any]) -> IO[str]:
        when = datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ")
        prefix = capture_prefix(self.root, self.endpoint_name, self.variant_name, when)
        if self._file is None or prefix != self._file_prefix or self._file_records >= self.max_records_per_file:
            self._close_file()
            prefix.mkdir(parents=True, exist_ok=True)
            self._file = open(prefix / f"{uuid.uuid4()}{CAPTURE_SUFFIX}", "a", encoding="utf-8")
            self._file_prefix, self._file_records = prefix, 0
        return self._file

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                self._close_file()
                return
            try:
                handle = self._target(item)
                handle.write(json.dumps(item, separators=(",", ":")) + "\n")
                self._file_records += 1
                self.written += 1
                if self._queue.empty():
                    handle.flush()  # visible to readers as soon as the burst is written
            except OSError:
                self.dropped += 1
                logger.exception("data capture write failed; record dropped")


def _validated(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict) or record.get("eventVersion") != EVENT_VERSION:
        raise CaptureFormatError('not a capture record (needs eventVersion "0")')
    data = record.get("captureData")
    if not isinstance(data, dict) or "endpointInput" not in data:
        raise CaptureFormatError("captureData.endpointInput missing")
    for key, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
        payload = data.get(key)
        if payload is None and key == "endpointOutput":
            continue
        if not isinstance(payload, dict) or payload.get("mode") != mode or "data" not in payload or "encoding" not in payload:
            raise CaptureFormatError(f"captureData.{key} needs mode {mode}, data and encoding")
    metadata = record.get("eventMetadata")
    if not isinstance(metadata, dict) or "eventId" not in metadata or "inferenceTime" not in metadata:
        raise CaptureFormatError("eventMetadata needs eventId and inferenceTime")
    return record


def iter_captured_records(root: Path | str, errors: list[dict[str, Any]] | None = None) -> Iterator[dict]:
    """Every capture record under root (files in key order, lines in file order).

    A malformed line raises CaptureFormatError naming file and line, unless `errors` is a
    list: then it is appended there as {"path", "line", "reason"} and skipped.
    """
    for path in sorted(Path(root).rglob(f"*{CAPTURE_SUFFIX}")):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield _validated(json.loads(line))
                except (json.JSONDecodeError, CaptureFormatError) as error:
                    if errors is None:
                        raise CaptureFormatError(f"{path}:{number}: {error}") from None
                    errors.append({"path": str(path), "line": number, "reason": str(error)})


def iter_captured_predictions(root: Path | str, errors: list[dict[str, Any]] | None = None) -> Iterator[dict]:
    """One item per scored text: {event_id, inference_time, index, text, prediction}.

    Pairs each text of a captured request with its prediction in the captured response
    (JSON `{"predictions": [...]}` or JSON lines), for the text monitor.
    """
    for record in iter_captured_records(root, errors):
        data, meta = record["captureData"], record["eventMetadata"]
        try:
            texts = parse_texts(decode_payload(data["endpointInput"]), request_format(data["endpointInput"]["observedContentType"]))
            output = data.get("endpointOutput")
            body = decode_payload(output) if output else b""
            predictions = parse_predictions(body, output["observedContentType"]) if body else [None] * len(texts)
            if len(predictions) != len(texts):
                raise CaptureFormatError(f"{len(texts)} texts but {len(predictions)} predictions")
        except (RequestError, CaptureFormatError, KeyError, ValueError) as error:
            if errors is None:
                raise CaptureFormatError(f"event {meta['eventId']}: {error}") from None
            errors.append({"event_id": meta["eventId"], "reason": str(error)})
            continue
        for index, (text, prediction) in enumerate(zip(texts, predictions)):
            yield {"event_id": meta["eventId"], "inference_time": meta["inferenceTime"], "index": index, "text": text, "prediction": prediction}


def _request_items(body: bytes, fmt: str) -> tuple[list[Any], Callable[[list[Any]], bytes]]:
    """The items of a request body (aligned with parse_texts' texts) and how to write a body of some of them
    back in the same format."""
    decoded = body.decode("utf-8")
    if fmt == JSONLINES:
        items = [json.loads(line) for line in decoded.splitlines() if line.strip()]
        return items, lambda kept: "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in kept).encode("utf-8")
    if fmt == CSV:
        rows = [row for row in csv.reader(io.StringIO(decoded, newline=""), strict=True) if row]

        def write_csv(kept: list[Any]) -> bytes:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(kept)
            return out.getvalue().encode("utf-8")
        return rows, write_csv
    payload = json.loads(decoded)
    if isinstance(payload, dict) and "instances" in payload:
        return list(payload["instances"]), lambda kept: json.dumps({**payload, "instances": kept}, ensure_ascii=False).encode("utf-8")
    if isinstance(payload, list):
        return payload, lambda kept: json.dumps(kept, ensure_ascii=False).encode("utf-8")
    return [payload], lambda kept: json.dumps(kept[0] if len(kept) == 1 else {"instances": kept}, ensure_ascii=False).encode("utf-8")


def drop_captured_texts(record: dict[str, Any], texts: frozenset[str] | set[str]) -> tuple[dict[str, Any] | None, int]:
    """A capture record without the request items whose model input text is in `texts`, and their predictions
    (a data subject's erasure); (None, n) when every item goes, (record unchanged, 0) when none does.

    Captured requests carry texts, not ids, so the items are found by the exact text the model read
    (inference.codec.parse_texts, the endpoint's own parser). The body keeps its format and encoding."""
    data = record["captureData"]
    request = data["endpointInput"]
    body = decode_payload(request)
    fmt = request_format(request["observedContentType"])
    request_texts = parse_texts(body, fmt)
    drop = [text in texts for text in request_texts]
    removed = sum(drop)
    if not removed:
        return record, 0
    if removed == len(request_texts):
        return None, removed
    items, write_request = _request_items(body, fmt)
    kept_items = [item for item, gone in zip(items, drop) if not gone]
    new_data = {**data, "endpointInput": encode_payload(write_request(kept_items), request["observedContentType"], "INPUT")}
    response = data.get("endpointOutput")
    if response is not None and decode_payload(response):
        predictions = parse_predictions(decode_payload(response), response["observedContentType"])
        kept_predictions = [p for p, gone in zip(predictions, drop) if not gone]
        out_fmt = RESPONSE_TYPES[media_type(response["observedContentType"])]
        new_data["endpointOutput"] = encode_payload(render(kept_predictions, out_fmt), response["observedContentType"], "OUTPUT")
    return {**record, "captureData": new_data}, removed


def drop_texts_from_capture_file(content: str, texts: frozenset[str] | set[str]) -> tuple[str, int, int]:
    """A capture file's JSON lines rewritten by drop_captured_texts: (new content, texts removed, records
    removed). Lines that do not hold any of `texts` are kept byte for byte."""
    lines, texts_removed, records_removed = [], 0, 0
    for line in content.splitlines(keepends=True):
        if not line.strip():
            continue
        record = _validated(json.loads(line))
        kept, removed = drop_captured_texts(record, texts)
        texts_removed += removed
        if kept is None:
            records_removed += 1
        elif removed:
            lines.append(json.dumps(kept, separators=(",", ":")) + "\n")
        else:
            lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines), texts_removed, records_removed
