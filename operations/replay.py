"""`fbrain loop replay FILE --rate N`: send a JSONL / CSV / Parquet file through POST /feedback as a stream.

Records keep their own `created_at`; lines that are not even JSON are sent as they are (the service
rejects them with a reason, so nothing is dropped on the way); lines that are not UTF-8 cannot travel
in a UTF-8 body and are counted here as rejected (invalid_utf8).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from processing.readers import BadRecord, RawRecord, iter_file
from processing.schema import ReasonCode


@dataclass
class ReplayReport:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    requests: int = 0
    seconds: float = 0.0
    reasons: Counter = field(default_factory=Counter)
    http_errors: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        rate = self.sent / self.seconds if self.seconds else None
        return {"sent": self.sent, "accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected,
                "requests": self.requests, "seconds": round(self.seconds, 3),
                "records_per_s": round(rate, 1) if rate else None,
                "rejection_reasons": dict(self.reasons.most_common()), "http_errors": dict(self.http_errors)}


def replay_lines(path: Path) -> Iterator[Optional[str]]:
    """One JSON line per input record; None for a line that cannot be sent (not UTF-8)."""
    for item in iter_file(Path(path)):
        if isinstance(item, RawRecord):
            yield json.dumps(item.record, ensure_ascii=False, default=str)
        elif isinstance(item, BadRecord):
            raw = item.raw
            if item.reason == ReasonCode.invalid_utf8.value or not isinstance(raw, str):
                yield None
            else:
                yield raw.replace("\n", " ")


def replay(path: Path, post: Callable[[bytes], tuple[int, dict]], rate: float, batch_size: int = 100,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> ReplayReport:
    """Send `path` in batches of `batch_size` JSON lines at about `rate` records per second (0: as fast as possible).

    `post(body) -> (status code, JSON answer)` sends one POST /feedback."""
    report = ReplayReport()
    started = clock()
    batch: list[str] = []

    def flush() -> None:
        if not batch:
            return
        if rate > 0:  # pace: this batch may leave once the previous records' time budget has passed
            due = started + report.sent / rate
            wait = due - clock()
            if wait > 0:
                sleep(wait)
        status, answer = post(("\n".join(batch) + "\n").encode("utf-8"))
        report.requests += 1
        report.sent += len(batch)
        items = answer.get("items") if isinstance(answer, dict) else None
        if not items:
            report.http_errors[status] += 1
            report.rejected += len(batch)
            report.reasons[(answer.get("detail") or {}).get("reason", f"http_{status}")
                           if isinstance(answer, dict) else f"http_{status}"] += len(batch)
        else:
            for item in items:
                if item["status"] == "accepted":
                    report.accepted += 1
                elif item["status"] == "duplicate":
                    report.duplicates += 1
                else:
                    report.rejected += 1
                    report.reasons[item.get("reason") or "unknown"] += 1
        batch.clear()

    for line in replay_lines(path):
        if line is None:
            report.rejected += 1
            report.reasons[ReasonCode.invalid_utf8.value] += 1
            continue
        batch.append(line)
        if len(batch) >= batch_size:
            flush()
    flush()
    report.seconds = clock() - started
    return report


def http_poster(url: str, api_key: str, timeout_s: float = 30.0) -> Callable[[bytes], tuple[int, dict]]:
    import httpx

    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def post(body: bytes) -> tuple[int, dict]:
        response = client.post("/feedback", content=body,
                               headers={"x-api-key": api_key, "content-type": "application/x-ndjson"})
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}

    return post
