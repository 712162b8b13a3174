"""Test-wide settings: offline, no telemetry, no AWS account, and a shared tiny model."""
import os

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "SAGEMAKER_VALIDATE_ROLE": "false",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("AWS_ENDPOINT_URL", None)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "external"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data/external, or a visible skip where this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the external data sets in {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA
