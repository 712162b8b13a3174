"""The one real end-to-end run shared by the suite: `fbrain pipeline run --local` on the demo corpus.

It runs once per session (a few minutes on 2 cores with the packaged MiniLM) in a temporary
workspace, exactly as `make run` does, and later tests inspect its records, its registered
model and its endpoint instead of training models of their own.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class LocalRun:
    workspace: Path
    returncode: int
    output: str
    execution_id: str | None


def fbrain(workspace: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)


def run_pipeline_locally(workspace: Path, *params: str) -> LocalRun:
    args = ["pipeline", "run", "--local", "--workspace", str(workspace), "--param", "ModelApprovalStatus=Approved"]
    for param in params:
        args += ["--param", param]
    done = fbrain(workspace, *args)
    output = done.stdout + done.stderr
    execution_id = None
    for line in done.stdout.splitlines():
        if line.startswith("execution ") and ":" in line:
            execution_id = line.split()[1].rstrip(":")
    return LocalRun(workspace, done.returncode, output, execution_id)
