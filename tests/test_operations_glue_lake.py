"""The lake on AWS Glue + S3 (`loop.catalog=glue`, an s3:// warehouse), against a moto server.

pyarrow's S3 file system (pyiceberg's file IO) does not go through botocore, so moto's decorator cannot intercept
it: a ThreadedMotoServer on a free port stands in for AWS, named by `loop.aws_endpoint_url` (the lake's Glue and
S3 endpoint), never by a global AWS_ENDPOINT_URL.
"""
from __future__ import annotations

import json
import socket
import urllib.request
from datetime import datetime, timezone

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from operations_support import make_loop, record

BUCKET = "feedback-brain-lake"
WAREHOUSE = f"s3://{BUCKET}/warehouse"


@pytest.fixture
def aws_endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # A moto server in this process shares moto's in-memory state with every other one (and with mock_aws):
    # start from an empty account, and leave one.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()
    server.stop()


def _glue_config(url: str):
    from operations.config import LoopConfig

    return LoopConfig(catalog="glue", warehouse=WAREHOUSE, aws_endpoint_url=url)


def _bronze_rows(ids: list[str], batch_id: int) -> pa.Table:
    now = datetime(2026, 12, 1, 10, tzinfo=timezone.utc)
    return pa.table({"seq": list(range(len(ids))), "feedback_id": ids, "customer_id": ["c"] * len(ids),
                     "payload": ["{}"] * len(ids), "channel": ["review"] * len(ids),
                     "ingest_date": ["2026-12-01"] * len(ids), "received_at": [now] * len(ids),
                     "batch_id": [batch_id] * len(ids)})


def _data_files(s3, table: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"warehouse/feedback_brain.db/{table}/data/").get("Contents", [])
    return [item["Key"] for item in listed if item["Key"].endswith(".parquet")]


def test_lake_on_glue_and_s3_creates_appends_scans_skips_and_compacts(aws_endpoint, tmp_path):
    from operations import lake as lake_tables
    from operations.lake import Lake

    lake = Lake(_glue_config(aws_endpoint), tmp_path)
    glue = boto3.client("glue", endpoint_url=aws_endpoint, region_name="us-east-1")
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="feedback_brain")["TableList"]}
    assert set(tables) == set(lake_tables.SCHEMAS)
    assert tables["bronze"]["Parameters"]["table_type"].upper() == "ICEBERG"
    assert tables["bronze"]["Parameters"]["metadata_location"].startswith(f"{WAREHOUSE}/feedback_brain.db/bronze/")

    assert lake.write_once(lake_tables.BRONZE, _bronze_rows(["a", "b"], 1), 1) is True
    assert lake.write_once(lake_tables.BRONZE, _bronze_rows(["a", "b"], 1), 1) is False  # batch 1 is there already
    assert lake.write_once(lake_tables.BRONZE, _bronze_rows(["c"], 2), 2) is True
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    assert len(_data_files(s3, "bronze")) == 2

    reopened = Lake(_glue_config(aws_endpoint), tmp_path)  # another process: the catalog is the truth
    assert sorted(reopened.scan(lake_tables.BRONZE).column("feedback_id").to_pylist()) == ["a", "b", "c"]
    assert reopened.has_batch(lake_tables.BRONZE, 2) and not reopened.has_batch(lake_tables.BRONZE, 3)

    assert reopened.compact(lake_tables.BRONZE) == 3
    live = reopened.table(lake_tables.BRONZE).inspect.files().column("file_path").to_pylist()
    assert len(live) == 1 and live[0].startswith(f"{WAREHOUSE}/")
    assert sorted(Lake(_glue_config(aws_endpoint), tmp_path).scan(lake_tables.BRONZE).column("feedback_id").to_pylist()) \
        == ["a", "b", "c"]


@pytest.mark.slow
def test_loop_commands_on_glue_and_s3(aws_endpoint, tmp_path, tiny_model_dir):
    """`fbrain loop work --drain`, `loop maintain` and `loop forget` with loop.catalog=glue."""
    from operations import lake as lake_tables
    from operations.lake import Lake
    from pipelines.cli import app

    workspace = tmp_path / "ws"
    context, _ = make_loop(workspace, tiny_model_dir, _glue_config(aws_endpoint))
    items = [record("g-1", "Broke after one day.", customer_id="glue-subject"),
             record("g-2", "Perfect fit, love it.", customer_id="someone")]
    context.store.admit([(item, item, None) for item in items])
    glue = ["--set", "loop.catalog=glue", "--set", f"loop.warehouse={WAREHOUSE}",
            "--set", f"loop.aws_endpoint_url={aws_endpoint}"]

    def fbrain(*args):
        result = CliRunner().invoke(app, [*glue, "loop", *args, "--workspace", str(workspace)])
        assert result.exit_code == 0, result.output
        return result.output

    drained = json.loads(fbrain("work", "--drain", "--model-dir", str(tiny_model_dir)))
    assert drained["funnel"]["stages"]["scored"] == 2
    lake = Lake(_glue_config(aws_endpoint), workspace)
    assert sorted(lake.scan(lake_tables.SILVER).column("feedback_id").to_pylist()) == ["g-1", "g-2"]
    assert sum(r["count"] for r in lake.scan(lake_tables.GOLD).to_pylist() if r["aspect"] == "*") == 2

    maintained = json.loads(fbrain("maintain"))
    assert maintained["rows_compacted"]["silver"] == 2 and maintained["rows_compacted"]["bronze"] == 2

    audit = json.loads(fbrain("forget", "--customer-id", "glue-subject"))
    assert audit["counts"]["silver"] == 1 and audit["counts"]["bronze"] == 1
    lake = Lake(_glue_config(aws_endpoint), workspace)
    assert lake.scan(lake_tables.SILVER).column("feedback_id").to_pylist() == ["g-2"]
    for snapshot in lake.table(lake_tables.SILVER).snapshots():  # older snapshots expired: no time travel back
        ids = lake.scan(lake_tables.SILVER, snapshot_id=snapshot.snapshot_id).column("feedback_id").to_pylist()
        assert "g-1" not in ids
    s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
    for table in ("bronze", "silver"):  # nor in a data file left in S3 by the deletes and expired snapshots
        files = _data_files(s3, table)
        assert files
        for key in files:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert "g-1" not in pq.read_table(pa.BufferReader(body)).column("feedback_id").to_pylist(), key
