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


@pytest.fixture
def in_sagemaker_job(monkeypatch):
    """As inside a SageMaker job: no workspace, SageMaker's job configuration file present."""
    from processing import workspace

    monkeypatch.delenv(secrets.WORKSPACE_ENV, raising=False)
    monkeypatch.setattr(workspace, "in_sagemaker_job", lambda: True)
    secrets._read_secret_once.cache_clear()


def test_aws_secret_is_read_with_get_secret_value(secretsmanager, in_sagemaker_job):
    client, stubber = secretsmanager
    stubber.add_response("get_secret_value", {"Name": SECRET_ID, "SecretString": "s3cr3t-salt"}, {"SecretId": SECRET_ID})
    assert read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=client) == "s3cr3t-salt"
    stubber.assert_no_pending_responses()


def test_missing_aws_secret_is_a_clear_error(secretsmanager, in_sagemaker_job):
    client, stubber = secretsmanager
    stubber.add_client_error("get_secret_value", "ResourceNotFoundException", "Secrets Manager can't find it.")
    with pytest.raises(SecretUnavailable) as info:
        read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=client)
    message = str(info.value)
    assert SECRET_ID in message and "secretsmanager:GetSecretValue" in message and "FBRAIN_WORKSPACE" in message
    with pytest.raises(SecretUnavailable, match="no secret id configured"):
        read_secret("", PSEUDONYM_SALT_SECRET, client=client)


def test_a_module_run_by_hand_keeps_its_secret_in_dot_fbrain(tmp_path, monkeypatch):
    monkeypatch.delenv(secrets.WORKSPACE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    value = read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=object())
    assert (tmp_path / ".fbrain" / "secrets" / "feedback-brain_pseudonym-salt").read_text() == value


def test_a_local_run_never_calls_aws(tmp_path, monkeypatch):
    monkeypatch.setenv(secrets.WORKSPACE_ENV, str(tmp_path))
    value = read_secret(SECRET_ID, PSEUDONYM_SALT_SECRET, client=object())  # a client would fail if called
    assert value == (tmp_path / "secrets" / "feedback-brain_pseudonym-salt").read_text()


def test_processing_job_without_its_secret_fails_before_reading_data(tmp_path, monkeypatch, caplog, in_sagemaker_job):
    """In a SageMaker job with a secret id that cannot be read: exit code 2 and the reason."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    def refuse(secret_id, client=None):
        raise SecretUnavailable(f"cannot read secret {secret_id!r} from AWS Secrets Manager")

    monkeypatch.setattr(secrets, "read_aws_secret", refuse)
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


def test_feature_engineering_run_by_hand_needs_no_aws(tmp_path, monkeypatch):
    """`python -m processing.feature_engineering` by hand: local secrets and a local Feature Store under .fbrain."""
    import subprocess
    import sys

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"feedback_id": f"f{i}", "channel": "review", "text": f"Parcel {i} came late",
                                       "created_at": "2026-11-01T10:00:00Z", "customer_id": f"c{i}"}) + "\n"
                           for i in range(5)))
    env = {key: value for key, value in __import__("os").environ.items()
           if key not in ("FBRAIN_WORKSPACE", "FBRAIN_LOCAL_FEATURE_STORE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env["PYTHONPATH"] = str(repo)
    result = subprocess.run([sys.executable, "-m", "processing.feature_engineering", "--input-dir", str(raw),
                             "--output-dir", str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / ".fbrain" / "secrets" / "feedback-brain_pseudonym-salt").is_file()
    assert any((tmp_path / ".fbrain" / "featurestore").rglob("*.parquet"))
