"""Run one job's command as a subprocess: output to the step log and the console, heartbeats, timeout."""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("fbrain.runner")
_PYTHON_NAME = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")
OPT_ML = "/opt/ml"
_OPT_ML_PREFIX = re.compile(r"(?<![\w/.])/opt/ml(?=/|$|[\s,;:=])")


@dataclass
class ProcessResult:
    exit_code: int
    duration_seconds: float
    lines: int
    timed_out: bool


def python_command(command: list[str]) -> list[str]:
    """The container's `python3`/`python` is this interpreter (same venv, same packages)."""
    if command and _PYTHON_NAME.match(command[0]):
        return [sys.executable, *command[1:]]
    return list(command)


def remap_opt_ml(text: str, container_root: Path) -> str:
    """Rewrite every `/opt/ml` path prefix in a string to the step's container folder."""
    return _OPT_ML_PREFIX.sub(str(Path(container_root) / "opt" / "ml").replace("\\", "/"), text)


def container_path(path: str, container_root: Path) -> Path:
    """Where an absolute path of the container lies in the step's folder."""
    if not path.startswith("/"):
        raise ValueError(f"container paths are absolute, got {path!r}")
    return Path(container_root) / path.lstrip("/")


def run_command(command: list[str], env: dict[str, str], cwd: Path, log_path: Path, label: str,
                heartbeat_seconds: float, timeout_seconds: float = 0.0, forward: bool = True) -> ProcessResult:
    """Run to completion, teeing combined stdout/stderr into log_path (and the console logger)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    counter = {"lines": 0}
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", bufsize=1, start_new_session=True)

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                log.flush()
                counter["lines"] += 1
                if forward:
                    LOG.info("[%s] %s", label, line.rstrip())

        reader = threading.Thread(target=pump, name=f"log-{label}", daemon=True)
        reader.start()
        timed_out = False
        try:
            while True:
                try:
                    process.wait(timeout=heartbeat_seconds)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    if timeout_seconds and elapsed > timeout_seconds:
                        timed_out = True
                        LOG.error("[%s] stopping after %.0fs (limit %.0fs)", label, elapsed, timeout_seconds)
                        _terminate(process)
                        break
                    LOG.info("[%s] still running: %.0fs elapsed, %d log lines (%.1f lines/s)", label, elapsed,
                             counter["lines"], counter["lines"] / max(elapsed, 1e-9))
        except BaseException:
            # The job runs in its own session (so Ctrl-C reaches only the runner): stop it here
            # rather than leave an orphan writing into the workspace.
            _terminate(process)
            raise
        reader.join()
        duration = time.monotonic() - started
        log.write(f"# exit code {process.returncode} after {duration:.1f}s\n")
    return ProcessResult(process.returncode, duration, counter["lines"], timed_out)


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM the job's process group (what SageMaker sends when stopping), then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def log_tail(log_path: Path | str | None, lines: int) -> list[str]:
    if not log_path or not Path(log_path).is_file():
        return []
    with Path(log_path).open(encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
