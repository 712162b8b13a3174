"""Step caching: a job step whose arguments, input data and code are unchanged reuses an earlier result.

The key is computed from the step's arguments with the values that change every execution
(execution variables, other steps' properties) left symbolic, plus the content hashes of the
data the step reads and of the code its command runs. So an unchanged step hits even though
its output URIs contain a new execution id, and a changed input file or script misses."""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pipelines.local.executions import SUCCEEDED, StepRecord, list_executions
from pipelines.local.expressions import GET, JSON_GET, ExpressionContext, is_expression, resolve, to_text
from pipelines.local.object_store import ObjectStore, hash_tree
from pipelines.local.settings import RunnerSettings

CACHEABLE_TYPES = ("Processing", "Training")
_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
_DAYS_PER_YEAR, _DAYS_PER_MONTH = 365, 30
_IGNORED_CODE_PARTS = ("__pycache__",)


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration of CacheConfig.ExpireAfter (`P30D`, `PT1H`, `P1Y2M`)."""
    match = _DURATION.match(text or "")
    if not match or text in ("P", "PT"):
        raise ValueError(f"ExpireAfter {text!r} is not an ISO 8601 duration like P30D or PT12H")
    years, months, weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=years * _DAYS_PER_YEAR + months * _DAYS_PER_MONTH + weeks * 7 + days,
                     hours=hours, minutes=minutes, seconds=seconds)


def cache_policy(step_definition: dict[str, Any], settings: RunnerSettings, no_cache: bool) -> tuple[bool, timedelta | None]:
    """(enabled, expire_after) from the step's CacheConfig, the runner default and --no-cache."""
    if no_cache or step_definition.get("Type") not in CACHEABLE_TYPES:
        return False, None
    config = step_definition.get("CacheConfig")
    if config is None:
        return settings.cache_enabled_by_default, None
    if not config.get("Enabled", False):
        return False, None
    expire = config.get("ExpireAfter")
    return True, parse_duration(expire) if expire else None


def _symbolic(value: Any) -> Any:
    """Replace references that differ between executions by their text."""
    if isinstance(value, list):
        return [_symbolic(item) for item in value]
    if not isinstance(value, dict):
        return value
    if is_expression(value):
        (function, argument), = value.items()
        if function == GET and isinstance(argument, str) and argument.startswith(("Steps.", "Execution.")):
            return "{" + argument + "}"
        if function == JSON_GET:
            return "{" + json.dumps(argument, sort_keys=True) + "}"
    return {key: _symbolic(item) for key, item in value.items()}


def _input_uris(arguments: dict[str, Any]) -> list[str]:
    uris = [item["S3Input"]["S3Uri"] for item in arguments.get("ProcessingInputs", []) or [] if "S3Input" in item]
    uris += [c["DataSource"]["S3DataSource"]["S3Uri"] for c in arguments.get("InputDataConfig", []) or []
             if "S3DataSource" in (c.get("DataSource") or {})]
    return [to_text(uri) for uri in uris]


def _command(arguments: dict[str, Any]) -> list[str]:
    spec = arguments.get("AppSpecification") or arguments.get("AlgorithmSpecification") or {}
    return [to_text(p) for p in [*(spec.get("ContainerEntrypoint") or []), *(spec.get("ContainerArguments") or [])]]


def code_hash(command: list[str], code_root: Path, settings: RunnerSettings) -> str:
    """Hash of what a job's command runs: a `-m pkg.module`'s package and the packages it may
    import (contract import order), or a script file given by path."""
    digest = hashlib.sha256()
    targets: list[Path] = []
    if "-m" in command and command.index("-m") + 1 < len(command):
        top = command[command.index("-m") + 1].split(".")[0]
        order = settings.code_packages
        names = order[:order.index(top) + 1] if top in order else [top]
        targets = [code_root / name for name in names]
    else:
        targets = [Path(part) for part in command[1:] if part.endswith(".py") and Path(part).is_file()]
    for target in targets:
        if target.is_dir():
            for file in sorted(p for p in target.rglob("*") if p.is_file()
                               and not any(part in _IGNORED_CODE_PARTS for part in p.parts) and p.suffix != ".pyc"):
                digest.update(file.relative_to(code_root).as_posix().encode() + b"\0")
                digest.update(file.read_bytes())
        else:
            digest.update(hash_tree(target).encode())
    return digest.hexdigest()


def entry_module(arguments: dict[str, Any]) -> str | None:
    """`pkg.module` of a `python -m pkg.module` job command, else None."""
    command = _command(arguments)
    if "-m" in command and command.index("-m") + 1 < len(command):
        return command[command.index("-m") + 1]
    return None


def cache_key(spec_type: str, raw_arguments: dict[str, Any], resolved_arguments: dict[str, Any],
              parameters: dict[str, Any], store: ObjectStore, code_root: Path, settings: RunnerSettings,
              environment: dict[str, str] | None = None) -> str:
    """`environment`: facts outside the arguments that the job's result depends on (e.g. the champion)."""
    context = ExpressionContext(parameters=parameters, execution={}, step_properties=lambda name: {},
                                read_property_file=lambda ref: {})
    material = {
        "type": spec_type,
        "arguments": resolve(_symbolic(raw_arguments), context),
        "inputs": [store.content_hash(uri, settings.cache_ignored_input_folders)
                   for uri in _input_uris(resolved_arguments)],
        "code": code_hash(_command(resolved_arguments), code_root, settings),
        "environment": environment or {},
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _outputs_present(record: StepRecord, store: ObjectStore) -> bool:
    uris = [uri for uri in record.outputs.values() if isinstance(uri, str) and uri.startswith("s3://")]
    return all(store.exists(uri) for uri in uris)


def find_cached(workspace: Path, step_name: str, key: str, expire_after: timedelta | None, store: ObjectStore,
                current_execution: str) -> tuple[str, StepRecord] | None:
    """(execution id, step record) of the newest successful run of this step with the same key."""
    now = datetime.now(timezone.utc)
    for execution in list_executions(workspace):
        if execution.execution_id == current_execution:
            continue
        for step in execution.steps:
            if step.name != step_name or step.status != SUCCEEDED or step.cache_key != key:
                continue
            if expire_after is not None and step.end_time and \
                    now - datetime.fromisoformat(step.end_time) > expire_after:
                continue
            if _outputs_present(step, store):
                return (step.cached_from or execution.execution_id), step
    return None
