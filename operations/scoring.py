"""Who scores the worker's micro-batches: the champion in-process (ONNX Runtime), a SageMaker endpoint,
or any server with the /invocations contract. All three return inference.predictor's prediction dicts."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from inference.config import ServingConfig
from operations.config import LoopConfig


class Scorer(Protocol):
    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]: ...


class EndpointScorer:
    """A SageMaker real-time endpoint (same JSON contract as inference.app's /invocations)."""

    def __init__(self, endpoint_name: str, client: Any = None):
        import boto3

        self.endpoint_name = endpoint_name
        self.client = client or boto3.client("sagemaker-runtime")

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        response = self.client.invoke_endpoint(EndpointName=self.endpoint_name, ContentType="application/json",
                                               Accept="application/json", Body=json.dumps({"instances": list(texts)}))
        return json.loads(response["Body"].read())["predictions"]


class UrlScorer:
    """An HTTP server with /invocations (e.g. `fbrain serve`)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, client: Any = None):
        import httpx

        self.client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        response = self.client.post("/invocations", json={"instances": list(texts)})
        response.raise_for_status()
        return response.json()["predictions"]


def make_scorer(config: LoopConfig, serving: ServingConfig, model_dir: Optional[Path],
                model_name: Optional[str] = None, model_version: Optional[str] = None) -> Scorer:
    if config.scorer == "endpoint":
        if not config.scorer_target:
            raise ValueError("loop.scorer=endpoint needs loop.scorer_target=<SageMaker endpoint name>")
        return EndpointScorer(config.scorer_target)
    if config.scorer == "url":
        if not config.scorer_target:
            raise ValueError("loop.scorer=url needs loop.scorer_target=<base URL of a server with /invocations>")
        return UrlScorer(config.scorer_target)
    if model_dir is None:
        raise ValueError("no model to score with: train and register one (`fbrain pipeline run --local`) "
                         "or pass --model-dir")
    from inference.predictor import load_predictor

    return load_predictor(model_dir, serving, model_name, model_version)
