"""Execution records: `<workspace>/executions/<id>/execution.json`, one per pipeline run."""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXECUTIONS_DIR = "executions"
RECORD_FILE = "execution.json"
DEFINITION_FILE = "definition.json"

# Step statuses (SageMaker's names where SageMaker has one).
PENDING = "NotStarted"
EXECUTING = "Executing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
NOT_EXECUTED = "NotExecuted"
"""A step on the branch a Condition did not take (or depending on one)."""


class ExecutionNotFound(LookupError):
    pass


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_execution_id() -> str:
    """Sortable by start time, unique, and valid in S3 keys and job names (lowercase, digits, '-')."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


@dataclass
class StepRecord:
    name: str
    type: str
    status: str = PENDING
    start_time: str | None = None
    end_time: str | None = None
    duration_seconds: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    """Output name -> S3 URI (Processing), `model` / `output` -> archive URIs (Training), registry facts."""
    properties: dict[str, Any] = field(default_factory=dict)
    """Describe*-shaped properties other steps' `Get Steps.<name>...` resolve against."""
    property_files: dict[str, str] = field(default_factory=dict)
    """PropertyFile name -> S3 URI of the JSON file."""
    log_file: str | None = None
    failure_reason: str | None = None
    cache_hit: bool = False
    cache_key: str | None = None
    cached_from: str | None = None
    """Execution whose results a cache hit reused."""
    job_name: str | None = None
    branch: str | None = None
    """`<Condition>.IfSteps` / `<Condition>.ElseSteps` for steps inside a condition branch."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ExecutionRecord:
    execution_id: str
    pipeline_name: str
    parameters: dict[str, Any]
    status: str = EXECUTING
    start_time: str = field(default_factory=utc_now)
    end_time: str | None = None
    failure_reason: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    workspace: str = ""
    resumed: int = 0
    """How many times `resume_execution_id` continued this execution."""

    def step(self, name: str) -> StepRecord:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"execution {self.execution_id} has no step {name!r}")

    @property
    def directory(self) -> Path:
        return execution_dir(Path(self.workspace), self.execution_id)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "steps"}
        return cls(**values, steps=[StepRecord.from_dict(s) for s in data.get("steps", [])])

    def save(self) -> Path:
        """Write atomically so a reader (or a crash) never sees half a record."""
        path = self.directory / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
        os.replace(temporary, path)
        return path


def execution_dir(workspace: Path, execution_id: str) -> Path:
    return Path(workspace) / EXECUTIONS_DIR / execution_id


def load_execution(workspace: Path, execution_id: str) -> ExecutionRecord:
    path = execution_dir(workspace, execution_id) / RECORD_FILE
    if not path.is_file():
        known = [r.execution_id for r in list_executions(workspace)]
        raise ExecutionNotFound(f"no execution {execution_id!r} in {workspace} (known: {known[:10]})")
    return ExecutionRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))


def list_executions(workspace: Path) -> list[ExecutionRecord]:
    """Every recorded execution, newest first."""
    root = Path(workspace) / EXECUTIONS_DIR
    records = []
    for path in root.glob(f"*/{RECORD_FILE}") if root.is_dir() else []:
        try:
            records.append(ExecutionRecord.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"unreadable execution record {path}: {error}") from error
    return sorted(records, key=lambda r: (r.start_time, r.execution_id), reverse=True)
