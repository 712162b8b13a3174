"""The pseudonym salt is a secret: Secrets Manager on AWS (botocore Stubber), a random workspace file locally."""
from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from processing import secrets
from processing.config import ProcessingConfig
from processing.feature_engineering import main as feature_engineering_main
from processing.pii import PSEUDONYM_SALT_SECRET
from processing.secrets import SecretUnavailable, read_secret

SECRET_ID = "feedback-brain/pseudonym-salt"


@pytest.fixture
def secretsmanager():
    client = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber


def test_aws_secret_is_read_with_get_secret_value(secretsmanager, monkeypatch):
    client, stubber = secretsmanager
    monkeypatch.delenv(secrets.WORKSPACE_ENV, raising=False)
    stubber.add_response("get_secret_value", {"Name": SECRET_ID, "SecretString": "s3cr3t-salt"}, {"SecretId": SECRET_ID})
    assert read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=client) == "s3cr3t-salt"
    stubber.assert_no_pending_responses()


def test_missing_aws_secret_is_a_clear_error(secretsmanager, monkeypatch):
    client, stubber = secretsmanager
    monkeypatch.delenv(secrets.WORKSPACE_ENV, raising=False)
    stubber.add_client_error("get_secret_value", "ResourceNotFoundException", "Secrets Manager can't find it.")
    with pytest.raises(SecretUnavailable) as info:
        read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=client)
    message = str(info.value)
    assert SECRET_ID in message and "secretsmanager:GetSecretValue" in message and "FBRAIN_WORKSPACE" in message


def test_a_local_run_never_calls_aws(tmp_path, monkeypatch):
    monkeypatch.setenv(secrets.WORKSPACE_ENV, str(tmp_path))
    value = read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=object())  # a client would fail if called
    assert value == (tmp_path / "secrets" / "feedback-brain_pseudonym-salt").read_text()


def test_processing_job_without_its_secret_fails_before_reading_data(tmp_path, monkeypatch, caplog):
    """On SageMaker (no FBRAIN_WORKSPACE) with a secret id that cannot be read: exit code 2 and the reason."""
    monkeypatch.delenv(secrets.WORKSPACE_ENV, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def refuse(secret_id, client=None):
        raise SecretUnavailable(f"cannot read secret {secret_id!r} from AWS Secrets Manager")

    monkeypatch.setattr(secrets, "read_aws_secret", refuse)
    secrets._read_secret_once.cache_clear()
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"feedback_id": "f1", "text": "Great"}) + "\n")
    code = feature_engineering_main(["--input-dir", str(raw), "--output-dir", str(tmp_path / "out"),
                                     "--set", f"processing.pseudonym_salt_secret_id={SECRET_ID}"])
    assert code == 2 and f"cannot read secret '{SECRET_ID}'" in caplog.text
    assert not (tmp_path / "out" / "lake").exists()


def test_no_salt_value_is_written_in_code_or_config():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    for path in [*root.glob("processing/*.py"), *root.glob("pipelines/*.py")]:
        assert "feedback-brain-local-salt" not in path.read_text(encoding="utf-8"), path
    assert ProcessingConfig().pseudonym_salt_secret_id == ""
