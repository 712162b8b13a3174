"""Score texts through a real, short-lived HTTP endpoint (used by `fbrain demo` and tests).

The server is the same app `fbrain serve` runs, bound to a free loopback port for the
duration of the call, so the demo exercises the HTTP contract rather than calling the model
directly.
"""
from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from inference.config import ServingConfig

READY_TIMEOUT_SECONDS = 120.0
"""How long to wait for /ping to turn healthy (model load, ONNX session start)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def score_over_http(model_dir: Path, serving: ServingConfig, texts: Sequence[str]) -> list[dict[str, Any]]:
    import httpx
    import uvicorn

    from inference.app import create_app
    from inference.serve import capture_writer_for

    config = dataclasses.replace(serving, host="127.0.0.1", port=free_port())
    app = create_app(model_dir, config, capture=capture_writer_for(config))
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="demo-endpoint", daemon=True)
    thread.start()
    base = f"http://{config.host}:{config.port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"endpoint at {base} not healthy after {READY_TIMEOUT_SECONDS:.0f}s")
            time.sleep(0.2)
        response = httpx.post(f"{base}/invocations", json={"instances": [{"text": t} for t in texts]}, timeout=60)
        response.raise_for_status()
        return response.json()["predictions"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
