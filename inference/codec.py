"""The endpoint's request and response bodies, without the web framework.

What `POST /invocations` accepts (`application/json`, `application/jsonlines`, `text/csv`; a
JSON item may carry a `title`, read in front of the text as in training), the limits a request
must keep, and the JSON or JSON-lines body it answers. The HTTP app (inference.app) and the
readers of captured traffic (inference.capture, the monitor) share this module, so captured
bodies are parsed by the very code that parsed them on the endpoint, and the monitoring job
does not load FastAPI.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from inference.config import ServingConfig
from processing.schema import model_input_text

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
REQUEST_TYPES = {JSON: JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES, "application/jsonl": JSONLINES, CSV: CSV}
RESPONSE_TYPES = {JSON: JSON, JSONLINES: JSONLINES, "application/x-jsonlines": JSONLINES, "application/jsonl": JSONLINES}


class RequestError(Exception):
    """A request the endpoint refuses: HTTP status, machine-readable code, message, item index."""

    def __init__(self, status: int, code: str, message: str, index: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.index = status, code, message, index

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.index is not None:
            error["index"] = self.index
        return {"error": error}


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def request_format(content_type: str | None) -> str:
    base = media_type(content_type)
    if base not in REQUEST_TYPES:
        shown = base or "none"
        raise RequestError(415, "unsupported_media_type", f"Content-Type {shown!r} is not accepted; send one of {sorted(set(REQUEST_TYPES.values()))}")
    charset = [p.split("=", 1)[1].strip().strip('"').lower() for p in (content_type or "").split(";")[1:] if p.strip().lower().startswith("charset=")]
    if charset and charset[0] not in ("utf-8", "utf8"):
        raise RequestError(415, "unsupported_charset", f"charset {charset[0]!r} is not accepted; send UTF-8")
    return REQUEST_TYPES[base]


def response_format(accept: str | None) -> str:
    """The first acceptable type in the Accept header (q-values ignored: clients send one)."""
    if not accept or not accept.strip():
        return JSON
    for part in accept.split(","):
        base = media_type(part)
        if base in RESPONSE_TYPES:
            return RESPONSE_TYPES[base]
        if base in ("*/*", "application/*"):
            return JSON
    raise RequestError(406, "not_acceptable", f"Accept {accept!r} cannot be served; ask for one of {sorted(set(RESPONSE_TYPES.values()))}")


def _text_of(item: Any, index: int) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and "text" in item:
        if not isinstance(item["text"], str):
            raise RequestError(400, "invalid_text", f"item {index}: 'text' must be a string, got {type(item['text']).__name__}", index)
        title = item.get("title")
        if title is not None and not isinstance(title, str):
            raise RequestError(400, "invalid_title", f"item {index}: 'title' must be a string, got {type(title).__name__}", index)
        # An empty text stays empty (and gets its 400) even when a title comes with it.
        return model_input_text(item["text"], title) if item["text"].strip() else item["text"]
    raise RequestError(400, "invalid_instance", f'item {index}: expected a string or an object with "text"', index)


def parse_texts(body: bytes, fmt: str) -> list[str]:
    """Texts of a request body in one of the accepted formats (no limits applied here)."""
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, "invalid_utf8", f"body is not valid UTF-8 (byte {error.start}): {error.reason}") from None
    if fmt == JSON:
        try:
            payload = json.loads(decoded)
        except json.JSONDecodeError as error:
            raise RequestError(400, "malformed_json", f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
        if isinstance(payload, dict) and "instances" in payload:
            items = payload["instances"]
            if not isinstance(items, list):
                raise RequestError(400, "invalid_instances", '"instances" must be a list')
            return [_text_of(item, i) for i, item in enumerate(items)]
        if isinstance(payload, dict) and "text" in payload:
            return [_text_of(payload, 0)]
        if isinstance(payload, list):
            return [_text_of(item, i) for i, item in enumerate(payload)]
        raise RequestError(400, "invalid_body", 'JSON body must be {"text": ...}, {"instances": [...]} or a list')
    if fmt == JSONLINES:
        texts = []
        for i, line in enumerate(line for line in decoded.splitlines() if line.strip()):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise RequestError(400, "malformed_json", f"line {i}: not valid JSON: {error.msg}", i) from None
            texts.append(_text_of(item, i))
        return texts
    texts = []
    try:
        rows = list(csv.reader(io.StringIO(decoded, newline=""), strict=True))
    except csv.Error as error:
        raise RequestError(400, "malformed_csv", f"body is not valid CSV (RFC 4180): {error}") from None
    for i, row in enumerate(row for row in rows if row):
        if len(row) != 1:
            raise RequestError(400, "malformed_csv", f"row {i} has {len(row)} fields; send one text per row and quote texts containing commas", i)
        texts.append(row[0])
    return texts


def check_texts(texts: list[str], config: ServingConfig) -> None:
    if not texts:
        raise RequestError(400, "no_texts", "the request holds no texts")
    if len(texts) > config.max_instances_per_request:
        raise RequestError(400, "too_many_instances", f"{len(texts)} texts in one request; the limit is {config.max_instances_per_request}")
    for i, text in enumerate(texts):
        if not text.strip():
            raise RequestError(400, "empty_text", f"item {i}: text is empty", i)
        if len(text) > config.max_text_chars:
            raise RequestError(400, "text_too_long", f"item {i}: {len(text)} characters; the limit is {config.max_text_chars}", i)


def render(predictions: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == JSONLINES:
        return "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in predictions).encode("utf-8")
    return json.dumps({"predictions": predictions}, separators=(",", ":")).encode("utf-8")


def parse_predictions(body: bytes, content_type: str) -> list[Any]:
    """The predictions in a response body as `render` writes it (its inverse); ValueError otherwise."""
    fmt = RESPONSE_TYPES.get(media_type(content_type))
    if fmt is None:
        raise ValueError(f"Content-Type {content_type!r} is not a response type of the endpoint")
    text = body.decode("utf-8")
    if fmt == JSONLINES:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    payload = json.loads(text)
    if not isinstance(payload, dict) or not isinstance(payload.get("predictions"), list):
        raise ValueError('a JSON response body is {"predictions": [...]}')
    return payload["predictions"]
