"""The loop on AWS: an API Gateway Lambda for POST /feedback, a Kinesis consumer Lambda, the lake's upkeep.

- `api_handler`: the same body parsing and validation as the service (operations.intake.parse_body,
  processing.schema.validate_record); a conditional put on FeedbackMetadata decides accepted /
  duplicate (same content) / conflict (409); accepted and rejected items go on the Kinesis stream
  (rejected ones with their reason, so the consumer quarantines them: nothing is dropped). API
  Gateway checks the `x-api-key` (usage plans) before the Lambda runs.
- `consumer_handler`: one Kinesis batch is one micro-batch through the batch FeatureEngineering
  step's function (ChunkTransformer) and duplicate resolution, scored by the SageMaker endpoint
  (loop.scorer_target); it writes the lake on Glue + S3 (bronze, quarantine, silver, gold: the worker's
  rows), then FeedbackMetadata (stage, predictions), CustomerInsights (customerId = pseudonym, timestamp)
  and ModelPerformance (modelId, version: prediction counts). Failures are reported per record
  (`batchItemFailures`), so one bad record does not block a shard; a redelivered record adds no lake row
  and is counted once in DynamoDB.
- `maintain_handler`: scheduled; the worker's maintain_lake (raw-text retention, compaction, expiry).

Both read their settings from the environment once per cold start (`deployed_sections`): the CDK app
sets `FBRAIN__LOOP__KINESIS_STREAM`, `FBRAIN__LOOP__FEEDBACK_METADATA_TABLE`, ... (processing.settings).
Table keys are operations.aws_tables' constants, which the CDK app creates the tables with.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any, Optional

from operations.aws_tables import CUSTOMER_ID, FEEDBACK_ID, MODEL_ID, MODEL_VERSION, TIMESTAMP
from operations.config import LoopConfig
from operations.intake import BodyError, parse_body
from operations.store import payload_hash
from processing.config import ProcessingConfig
from processing.settings import load_sections
from processing.schema import RecordValidationError, model_input_text, validate_record

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def deployed_sections() -> tuple[LoopConfig, ProcessingConfig]:
    """The `loop` and `processing` sections with the function's FBRAIN__SECTION__FIELD variables applied,
    built once per cold start (a bad value fails the first invocation with the setting's name)."""
    sections = load_sections({"loop": LoopConfig(), "processing": ProcessingConfig()})
    return sections["loop"], sections["processing"]


def _sections(config: Optional[LoopConfig], processing: Optional[ProcessingConfig]
              ) -> tuple[LoopConfig, ProcessingConfig]:
    if config is not None and processing is not None:
        return config, processing
    loop, deployed_processing = deployed_sections()
    return config or loop, processing or deployed_processing


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _body_bytes(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8", "surrogateescape")


def api_handler(event: dict[str, Any], context: Any = None, config: Optional[LoopConfig] = None,
                processing: Optional[ProcessingConfig] = None, dynamodb: Any = None, kinesis: Any = None) -> dict[str, Any]:
    """API Gateway (REST or HTTP API, proxy integration) POST /feedback -> Kinesis."""
    import boto3
    from botocore.exceptions import ClientError

    config, processing = _sections(config, processing)
    dynamodb = dynamodb or boto3.client("dynamodb")
    kinesis = kinesis or boto3.client("kinesis")
    body = _body_bytes(event)
    if len(body) > config.max_body_bytes:
        return _response(413, {"detail": {"reason": "body_too_large", "message": f"the limit is {config.max_body_bytes} bytes"}})
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        raw_items = parse_body(body, headers.get("content-type", ""), config.max_items_per_request)
    except BodyError as exc:
        return _response(exc.status, {"detail": {"reason": exc.reason, "message": exc.message}})
    now = datetime.now(timezone.utc).isoformat()
    results, entries = [], []
    for raw in raw_items:
        if isinstance(raw, BodyError):
            rejection, raw = {"reason": raw.reason, "field": None, "message": raw.message}, {"unparsed_line": raw.message}
        else:
            try:
                record = validate_record(raw, processing.max_text_chars).model_dump(mode="json")
                rejection = None
            except RecordValidationError as exc:
                rejection = exc.as_dict()
        feedback_id = raw.get("feedback_id") if isinstance(raw, dict) else None
        if rejection:
            results.append({"feedback_id": feedback_id, "status": "rejected", **rejection})
            entries.append({"record": raw, "rejection": rejection, "received_at": now})
            continue
        sha = payload_hash(raw)
        try:
            dynamodb.put_item(TableName=config.feedback_metadata_table, Item={
                FEEDBACK_ID: {"S": record["feedback_id"]}, "payloadSha": {"S": sha}, "stage": {"S": "received"},
                "receivedAt": {"S": now}, "createdAt": {"S": record["created_at"]}},
                ConditionExpression=f"attribute_not_exists({FEEDBACK_ID})")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            held = dynamodb.get_item(TableName=config.feedback_metadata_table,
                                     Key={FEEDBACK_ID: {"S": record["feedback_id"]}}).get("Item", {})
            same = held.get("payloadSha", {}).get("S") == sha
            results.append({"feedback_id": feedback_id, "status": "duplicate"} if same else
                           {"feedback_id": feedback_id, "status": "rejected", "reason": "conflict",
                            "message": f"feedback_id {feedback_id!r} already holds a different record"})
            continue
        results.append({"feedback_id": feedback_id, "status": "accepted"})
        entries.append({"record": raw, "rejection": None, "received_at": now})
    for start in range(0, len(entries), 500):  # Kinesis takes at most 500 records per call
        chunk = entries[start:start + 500]
        answer = kinesis.put_records(StreamName=config.kinesis_stream, Records=[
            {"Data": json.dumps(e, ensure_ascii=False, default=str).encode("utf-8"),
             "PartitionKey": str((e["record"] or {}).get("feedback_id") or "rejected") if isinstance(e["record"], dict)
             else "rejected"} for e in chunk])
        if answer.get("FailedRecordCount"):
            failed = [e for e, r in zip(chunk, answer["Records"]) if "ErrorCode" in r]
            return _response(503, {"detail": {"reason": "stream_unavailable",
                                              "message": f"{len(failed)} records could not be put on the stream; retry"}})
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    conflicts = sum(1 for r in results if r.get("reason") == "conflict")
    body_out = {"accepted": counts["accepted"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
                "items": results}
    if conflicts and not counts["accepted"] and not counts["duplicate"]:
        return _response(409, body_out)
    if counts["rejected"] == len(results):
        return _response(422, body_out)
    return _response(202, body_out)


KINESIS_BATCH_PROPERTY = "fbrain.kinesis_batch"
"""Snapshot summary property of the consumer's lake writes: the tag of the Kinesis batch that made them (not the
local worker's `fbrain.batch`, whose ids increase: these are hashes)."""
_LAKES: dict[str, Any] = {}
"""The lake of this cold start, by warehouse (opening the Glue catalog and its four tables costs round trips)."""


def deployed_lake(config: LoopConfig):
    """The Iceberg lake the consumer writes (loop.catalog=glue and an s3:// warehouse on AWS), once per cold start."""
    from pathlib import Path

    from operations.lake import Lake

    if config.catalog != "glue" or not config.warehouse.startswith("s3://"):
        raise ValueError(f"loop.catalog={config.catalog!r}, loop.warehouse={config.warehouse!r}: a Lambda's disk lasts "
                         "one execution environment, so the consumer writes the lake through the Glue catalog and an "
                         "s3:// warehouse (FBRAIN__LOOP__CATALOG=glue, FBRAIN__LOOP__WAREHOUSE=s3://...)")
    key = f"{config.warehouse}:{config.namespace}"
    if key not in _LAKES:
        _LAKES[key] = Lake(config, Path("/tmp"))  # the workspace only names a default warehouse: unused on Glue
    return _LAKES[key]


def _batch_tag(sequence_numbers: list[str]) -> int:
    """A stable int64 tag of one Kinesis batch for the lake's snapshot summaries and batch_id columns."""
    digest = hashlib.sha256("|".join(sequence_numbers).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def consumer_handler(event: dict[str, Any], context: Any = None, config: Optional[LoopConfig] = None,
                     processing: Optional[ProcessingConfig] = None, dynamodb: Any = None,
                     scorer: Any = None, lake: Any = None) -> dict[str, Any]:
    """Kinesis -> the micro-batch function -> endpoint scores -> the lake and DynamoDB; returns batchItemFailures.

    The lake gets what the local worker writes (bronze as received, quarantine with reasons, silver with
    predictions, gold recomputed for the windows the batch touched). Kinesis delivers at least once (a retried
    batch, a bisected one, the records after a reported failure), so every lake write is idempotent: bronze,
    quarantine and silver take only the feedback ids they lack (Lake.insert_new), and gold is recomputed from
    silver and overwrites its windows. DynamoDB is written last; a redelivered record moves nothing twice there
    either."""
    import boto3
    import numpy as np

    from operations import lake as lake_tables
    from operations.gold import recompute_gold
    from operations.scoring import EndpointScorer
    from operations.worker import bronze_row, quarantine_row, silver_row
    from processing.dedup import KEPT, resolve_duplicates
    from processing.feature_engineering import ChunkTransformer
    from processing.readers import RawRecord

    config, processing = _sections(config, processing)
    dynamodb = dynamodb or boto3.client("dynamodb")
    lake = lake if lake is not None else deployed_lake(config)
    now = datetime.now(timezone.utc)
    failures: list[str] = []
    entries, items, sequence = [], [], []
    for record in event.get("Records", []):
        number = record["kinesis"]["sequenceNumber"]
        try:
            entry = json.loads(base64.b64decode(record["kinesis"]["data"]))
        except (ValueError, TypeError):
            log.error("consumer: record %s is not a JSON entry; reported as failed", number)
            failures.append(number)
            continue
        record_in = entry.get("record") if isinstance(entry.get("record"), dict) else {}
        entry["feedback_id"] = str(record_in.get("feedback_id") or "") or f"unparsed-{payload_hash(record_in)[:16]}"
        entry["customer_id"] = str(record_in["customer_id"]) if record_in.get("customer_id") else None
        entry["sequence"] = number
        entries.append(entry)
        if entry.get("rejection"):
            continue
        items.append(RawRecord(entry["record"], json.dumps(entry["record"]), "kinesis", len(items)))
        sequence.append(number)
    if not entries:
        return {"batchItemFailures": [{"itemIdentifier": n} for n in failures]}
    tag = _batch_tag([e["sequence"] for e in entries])
    # What the local receive log holds per record (operations.store), in the worker's row builders' shape.
    received = {position: {"seq": None, "received_at": e["received_at"], "feedback_id": e["feedback_id"],
                           "customer_id": e["customer_id"], "payload": items[position].payload}
                for position, e in enumerate(e for e in entries if not e.get("rejection"))}

    output = ChunkTransformer(processing, 0, now)(0, items)
    staged = output.staged.to_pylist() if output.staged is not None else []
    if staged:
        index = output.staged.to_pandas()
        outcome = resolve_duplicates(index[[c for c in index.columns if c in (
            "feedback_id", "created_at", "exact_key", "text_key", "customer_key", "near_eligible") or c.startswith("band_")]],
            processing)["outcome"].to_numpy()
    else:
        outcome = np.array([])
    kept = [row for row, out in zip(staged, outcome) if out == KEPT]
    scorer = scorer or EndpointScorer(config.scorer_target)
    try:
        predictions = scorer.predict([model_input_text(row["text"], row["title"]) for row in kept])
    except Exception:  # the endpoint failed: every record that needed it is retried
        log.exception("consumer: scoring failed")
        return {"batchItemFailures": [{"itemIdentifier": n} for n in failures + [sequence[r["line_no"]] for r in kept]]}
    scored_at = datetime.now(timezone.utc)

    # --- the lake: the rows the local worker would write, each write idempotent ---
    quarantined = [quarantine_row({**e, "seq": None, "payload": json.dumps(e["record"], default=str)},
                                  e["rejection"], now, tag) for e in entries if e.get("rejection")]
    quarantined += [quarantine_row(received[q["line_no"]], q, now, tag) for q in output.quarantined]
    spam = []
    for _feedback_id, position, kind, row in output.candidates:
        if kind == "quarantine":
            quarantined.append(quarantine_row(received[position], row, now, tag))
        elif kind == "spam":
            spam.append(row)
    silver = [silver_row(row, received, now, tag, prediction, scored_at) for row, prediction in zip(kept, predictions)]
    silver += [silver_row(row, received, now, tag, None, None) for row in spam]
    bronze = [bronze_row({**e, "seq": None, "payload": json.dumps(e["record"], ensure_ascii=False, default=str),
                          "channel": e["record"].get("channel") if isinstance(e["record"], dict) else None}, tag)
              for e in entries]
    try:
        for name, rows in ((lake_tables.BRONZE, bronze), (lake_tables.QUARANTINE, quarantined),
                           (lake_tables.SILVER, silver)):
            if rows:
                lake.insert_new(name, _unique(rows), {KINESIS_BATCH_PROPERTY: str(tag)})
        if kept:
            gold, window_filter = recompute_gold(lake, [row["created_at"] for row in kept], config.gold_window, now)
            lake.write(lake_tables.GOLD, gold, {KINESIS_BATCH_PROPERTY: str(tag)}, overwrite_filter=window_filter)
    except Exception:  # e.g. another writer's commit first: the whole batch is retried, every write is idempotent
        log.exception("consumer: writing the lake failed")
        lake.refresh_all()
        return {"batchItemFailures": [{"itemIdentifier": e["sequence"]} for e in entries] +
                [{"itemIdentifier": n} for n in failures]}

    # --- DynamoDB: stages and predictions (a redelivery changes and counts nothing) ---
    for row, prediction in zip(kept, predictions):
        try:
            _write_scored(dynamodb, config, row, prediction, now)
        except Exception:
            log.exception("consumer: writing %s failed", row["feedback_id"])
            failures.append(sequence[row["line_no"]])
    for row, out in zip(staged, outcome):
        if out != KEPT:
            _set_stage(dynamodb, config, row["feedback_id"], "enriched", now, reason=str(out))
    for row in spam:
        _set_stage(dynamodb, config, row["feedback_id"], "enriched", now, reason=f"spam:{row['spam_rule']}")
    for row in quarantined:
        if row["feedback_id"] and not row["feedback_id"].startswith("unparsed-"):
            _set_stage(dynamodb, config, row["feedback_id"], "quarantined", now, reason=str(row["reason"]))
    return {"batchItemFailures": [{"itemIdentifier": n} for n in failures]}


def maintain_handler(event: Optional[dict[str, Any]] = None, context: Any = None, config: Optional[LoopConfig] = None,
                     lake: Any = None) -> dict[str, Any]:
    """Scheduled upkeep of the lake on AWS, what the local worker does between micro-batches (operations.worker.
    maintain_lake): raw text purged past `loop.bronze_raw_retention_days`, every table compacted, snapshots beyond
    `loop.snapshot_keep_last` expired. A commit that loses to the consumer's fails this run; the next one retries."""
    from operations.worker import maintain_lake

    config = config or deployed_sections()[0]
    lake = lake if lake is not None else deployed_lake(config)
    report = maintain_lake(lake, config)
    log.info("lake maintenance: %s", json.dumps(report, default=str))
    return json.loads(json.dumps(report, default=str))


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per feedback_id (the upsert key): the last one wins, as a later delivery would."""
    return list({row["feedback_id"]: row for row in rows}.values())


def _set_stage(dynamodb: Any, config: LoopConfig, feedback_id: str, stage: str, now: datetime, reason: str = "") -> None:
    """A record that ends before scoring: `enriched` (a duplicate or spam: the reason says which) or `quarantined`."""
    dynamodb.update_item(TableName=config.feedback_metadata_table, Key={FEEDBACK_ID: {"S": feedback_id}},
                         UpdateExpression=f"SET stage = :s, {'quarantinedAt' if stage == 'quarantined' else 'enrichedAt'}"
                                          " = :t, reason = :r",
                         ExpressionAttributeValues={":s": {"S": stage}, ":t": {"S": now.isoformat()},
                                                    ":r": {"S": reason}})


def _write_scored(dynamodb: Any, config: LoopConfig, row: dict, prediction: dict, now: datetime) -> None:
    from botocore.exceptions import ClientError

    model = prediction["model"]
    try:  # only the first delivery moves the record to scored; a redelivery changes and counts nothing
        dynamodb.update_item(
            TableName=config.feedback_metadata_table, Key={FEEDBACK_ID: {"S": row["feedback_id"]}},
            UpdateExpression="SET stage = :scored, scoredAt = :t, sentiment = :s, intent = :i, aspects = :a,"
                             " modelName = :m, modelVersion = :v, #lang = :l",
            ConditionExpression="attribute_not_exists(stage) OR stage <> :scored",
            ExpressionAttributeNames={"#lang": "language"},
            ExpressionAttributeValues={
                ":scored": {"S": "scored"}, ":t": {"S": now.isoformat()},
                ":s": {"S": prediction["sentiment"]["label"]}, ":i": {"S": prediction["intent"]["label"]},
                ":a": {"L": [{"S": a} for a in prediction["aspects"]["labels"]]},
                ":m": {"S": str(model["name"])}, ":v": {"S": str(model["version"])},
                ":l": {"S": row["language"] or "und"}})
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return
        raise
    if row.get("customer_id"):
        dynamodb.put_item(TableName=config.customer_insights_table, Item={
            CUSTOMER_ID: {"S": row["customer_id"]},
            TIMESTAMP: {"S": f"{row['created_at'].isoformat()}#{row['feedback_id']}"},
            "feedbackId": {"S": row["feedback_id"]}, "sentiment": {"S": prediction["sentiment"]["label"]},
            "intent": {"S": prediction["intent"]["label"]}, "sku": {"S": row.get("sku") or "unknown"}})
    dynamodb.update_item(TableName=config.model_performance_table,
                         Key={MODEL_ID: {"S": str(model["name"])}, MODEL_VERSION: {"S": str(model["version"])}},
                         UpdateExpression="ADD predictions :one SET lastScoredAt = :t",
                         ExpressionAttributeValues={":one": {"N": "1"}, ":t": {"S": now.isoformat()}})
