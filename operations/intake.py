"""How a POST /feedback body becomes raw items: one contract for the service and the API Gateway Lambda.

Kept free of the service's dependencies (FastAPI, numpy, pyiceberg) so the submit Lambda's zip package
(operations.aws_lambda.api_handler) holds only the standard library, pydantic and this project's modules.
"""
from __future__ import annotations

import json
from typing import Any

from processing.schema import ReasonCode


class BodyError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def parse_body(body: bytes, content_type: str, max_items: int) -> list[Any]:
    """One record, {"items": [...]}, a JSON list, or JSON lines -> raw items (a line that is not JSON
    becomes a BodyError item: it is rejected alone, not the whole body)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, ReasonCode.invalid_utf8.value, f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise BodyError(400, ReasonCode.invalid_json.value, "empty body")
    lines = [line for line in text.splitlines() if line.strip()]
    if "ndjson" in content_type or "jsonlines" in content_type or "jsonl" in content_type or len(lines) > 1:
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if whole is None:
            items: list[Any] = []
            for number, line in enumerate(lines, start=1):
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    items.append(BodyError(400, ReasonCode.invalid_json.value,
                                           f"line {number}: invalid JSON: {exc.msg} at column {exc.colno}"))
            return _check_count(items, max_items)
        text_items = whole
    else:
        try:
            text_items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BodyError(400, ReasonCode.invalid_json.value,
                            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if isinstance(text_items, dict) and "items" in text_items and set(text_items) == {"items"}:
        if not isinstance(text_items["items"], list):
            raise BodyError(422, ReasonCode.wrong_type.value, '"items" must be a list of records')
        return _check_count(text_items["items"], max_items)
    if isinstance(text_items, list):
        return _check_count(text_items, max_items)
    return [text_items]


def _check_count(items: list, max_items: int) -> list:
    if not items:
        raise BodyError(422, ReasonCode.missing_field.value, "no records in the body")
    if len(items) > max_items:
        raise BodyError(413, "too_many_items", f"{len(items)} records in one request; the limit is {max_items}")
    return items
