"""The real server process (`python3 -m inference.serve`) on loopback: keeps serving after bad requests."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from inference.serve import config_from_env
from inference.serve import main as serve_main

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_model_dir: Path, tmp_path: Path):
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "FBRAIN_MODEL_NAME": "feedback-brain-models", "FBRAIN_MODEL_VERSION": "4", "FBRAIN__SERVING__MAX_BATCH_WAIT_MS": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference.serve", "serve", "--model-dir", str(tiny_model_dir), "--host", "127.0.0.1",
             "--port", str(port), "--capture-dir", str(tmp_path / "capture")],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield base, log_path, tmp_path / "capture"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_server_answers_good_requests_after_every_bad_one(server):
    base, log_path, capture_root = server
    bad = [
        (b'{"text": ', {"content-type": "application/json"}, 400),
        (b"hello", {"content-type": "text/plain"}, 415),
        (b'{"text": ""}', {"content-type": "application/json"}, 400),
        (b'{"text": "' + b"a" * (10 * 1024 * 1024) + b'"}', {"content-type": "application/json"}, 413),
        (b'{"text": "\xc3\x28"}', {"content-type": "application/json"}, 400),
        (json.dumps({"instances": [{"text": "ok"}, {"txt": "bad"}]}).encode(), {"content-type": "application/json"}, 400),
    ]
    with httpx.Client(base_url=base, timeout=30) as client:
        for body, headers, status in bad:
            response = client.post("/invocations", content=body, headers=headers)
            assert response.status_code == status, response.text
            assert response.json()["error"]["message"]
            good = client.post("/invocations", json={"text": "Still there?"})
            assert good.status_code == 200
            assert good.json()["predictions"][0]["model"] == {"name": "feedback-brain-models", "version": "4", "runtime": "onnx-int8"}
        assert 'fbrain_requests_total{path="/invocations",status="413"} 1' in client.get("/metrics").text
    time.sleep(0.5)
    access = [json.loads(line) for line in log_path.read_text().splitlines() if '"event": "access"' in line]
    assert {e["status"] for e in access} >= {200, 400, 413, 415}
    assert all({"time", "level", "request_id", "latency_ms"} <= set(e) for e in access)


def test_settings_from_the_environment_and_cli_validation(tiny_model_dir: Path, capsys):
    config = config_from_env(environ={"FBRAIN__SERVING__RUNTIME": "onnx", "FBRAIN__SERVING__MAX_BATCH_SIZE": "8"})
    assert config.runtime == "onnx" and config.max_batch_size == 8
    with pytest.raises(ValueError, match="serving.port"):
        config_from_env(environ={"FBRAIN__SERVING__PORT": "eighty"})
    # The container's entry point refuses bad settings with a message, before loading any model.
    with pytest.raises(SystemExit) as exited:
        serve_main(["--model-dir", str(tiny_model_dir), "--runtime", "tensorrt"])
    assert exited.value.code == 2 and "tensorrt" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown setting 'serving.nope'"):
        serve_main(["--model-dir", str(tiny_model_dir), "--set", "serving.nope=1"])
