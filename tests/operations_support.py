"""Helpers shared by the live-loop tests: a loop on a temporary workspace with the tiny model."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
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


@contextlib.contextmanager
def serving(context, ready_within_s: float = 20.0):
    """The feedback service of `context` on a free local port (uvicorn in a thread); yields its base URL."""
    import uvicorn

    from operations.service import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_within_s
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
