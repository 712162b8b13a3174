"""Helpers shared by the live-loop tests: a loop on a temporary workspace with the tiny model."""
from __future__ import annotations

from pathlib import Path

from operations.config import LoopConfig
from processing.config import ProcessingConfig


def record(feedback_id: str, text: str, **extra) -> dict:
    base = {"feedback_id": feedback_id, "text": text, "channel": "review", "created_at": "2026-12-01T10:00:00Z",
            "customer_id": "cust-1", "sku": "SKU-1", "product_category": "shoes", "region": "EU"}
    return {**base, **extra}


def make_loop(workspace: Path, model_dir: Path, loop_config: LoopConfig | None = None):
    """(context, worker) over `workspace`, scoring in-process with the ONNX model in `model_dir`."""
    from inference.config import ServingConfig
    from operations.scoring import make_scorer
    from operations.service import open_loop
    from operations.worker import Worker

    config = loop_config or LoopConfig()
    processing = ProcessingConfig()
    context = open_loop(config, processing, workspace)
    scorer = make_scorer(config, ServingConfig(), model_dir, "tiny", "7")
    context.worker = Worker(config, processing, context.store, context.lake, scorer)
    return context, context.worker
