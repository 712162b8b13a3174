"""Resolve the expression language of SageMaker pipeline definitions.

Supported: `{"Get": "Parameters.X"}`, `{"Get": "Execution.<Variable>"}`,
`{"Get": "Steps.<Step>.<property path>"}` (a path into the step's Describe*Job-shaped
properties, e.g. `ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri`,
`ModelArtifacts.S3ModelArtifacts`), `{"Get": "Steps.<Step>.PropertyFiles.<Name>"}`,
`{"Std:Join": {"On": sep, "Values": [...]}}` and `{"Std:JsonGet": {"PropertyFile" | "S3Uri": ...,
"Path": "a.b[0]"}}`. Anything else that looks like an expression fails loudly.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

GET = "Get"
JOIN = "Std:Join"
JSON_GET = "Std:JsonGet"
FUNCTION_PREFIX = "Std:"

_PATH_TOKEN = re.compile(r"""\.?([A-Za-z_][\w\-]*)|\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\[\s*(-?\d+)\s*\]""")


class ExpressionError(ValueError):
    """An expression that cannot be resolved (unknown reference, bad path, missing file)."""


@dataclass(frozen=True)
class PropertyFileRef:
    """What `Steps.S.PropertyFiles.N` resolves to; `Std:JsonGet` reads it."""

    step_name: str
    name: str


@dataclass
class ExpressionContext:
    """Everything an expression may refer to at one moment of an execution."""

    parameters: dict[str, Any]
    execution: dict[str, Any]
    step_properties: Callable[[str], dict[str, Any]]
    """Step name -> its properties (raises ExpressionError when the step has not run)."""
    read_property_file: Callable[[PropertyFileRef], Any]
    """Parsed JSON content of a property file of a finished step."""
    read_json_uri: Callable[[str], Any] = field(default=lambda uri: _no_object_store(uri))
    """Parsed JSON content of an S3 object (for `Std:JsonGet` with `S3Uri`)."""
    defer_json_get: bool = False
    """Planning mode: check a `Std:JsonGet`'s property file reference, return a placeholder."""


def _no_object_store(uri: str) -> Any:
    raise ExpressionError(f"cannot read {uri}: this context has no object store")


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (
        GET in value or next(iter(value)).startswith(FUNCTION_PREFIX))


def parse_path(path: str) -> list[str | int]:
    """`A.B['x'][0].C` -> ['A', 'B', 'x', 0, 'C']; raises on anything it cannot read."""
    tokens: list[str | int] = []
    position = 0
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if not match or match.end() == position:
            raise ExpressionError(f"cannot parse path {path!r} at position {position}")
        name, single, double, index = match.groups()
        if name is not None:
            tokens.append(name)
        elif index is not None:
            tokens.append(int(index))
        else:
            tokens.append(single if single is not None else double)
        position = match.end()
    if not tokens:
        raise ExpressionError("empty path")
    return tokens


def walk_path(document: Any, tokens: list[str | int], where: str) -> Any:
    """Follow tokens into dicts and lists. A string key on a list selects the element whose
    `...Name` field equals it (how SageMaker addresses `Outputs['train']`, channels, ...)."""
    current = document
    for depth, token in enumerate(tokens):
        here = f"{where}: {'.'.join(map(str, tokens[:depth + 1]))}"
        if isinstance(current, dict) and isinstance(token, str):
            if token not in current:
                raise ExpressionError(f"{here} not found (have {sorted(current)})")
            current = current[token]
        elif isinstance(current, list) and isinstance(token, int):
            if not -len(current) <= token < len(current):
                raise ExpressionError(f"{here} index out of range (length {len(current)})")
            current = current[token]
        elif isinstance(current, list) and isinstance(token, str):
            matches = [item for item in current if isinstance(item, dict) and any(
                key.endswith("Name") and value == token for key, value in item.items())]
            if not matches:
                raise ExpressionError(f"{here}: no element named {token!r}")
            current = matches[0]
        else:
            raise ExpressionError(f"{here}: cannot index {type(current).__name__} with {token!r}")
    return current


def referenced_steps(value: Any) -> set[str]:
    """Names of the steps an argument tree refers to through `Steps.<name>...`."""
    found: set[str] = set()
    if isinstance(value, dict):
        get = value.get(GET) if len(value) == 1 else None
        if isinstance(get, str) and get.startswith("Steps."):
            found.add(get.split(".", 2)[1])
        for item in value.values():
            found |= referenced_steps(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_steps(item)
    return found


def to_text(value: Any) -> str:
    """How SageMaker renders a primitive inside `Std:Join` and string fields."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def resolve(value: Any, context: ExpressionContext) -> Any:
    """Resolve every expression inside an argument tree; plain values pass through."""
    if isinstance(value, list):
        return [resolve(item, context) for item in value]
    if not isinstance(value, dict):
        return value
    if not is_expression(value):
        return {key: resolve(item, context) for key, item in value.items()}
    (function, argument), = value.items()
    if function == GET:
        return _resolve_get(argument, context)
    if function == JOIN:
        return _resolve_join(argument, context)
    if function == JSON_GET:
        return _resolve_json_get(argument, context)
    raise ExpressionError(f"unsupported pipeline function {function!r}")


def _resolve_get(reference: Any, context: ExpressionContext) -> Any:
    if not isinstance(reference, str):
        raise ExpressionError(f"Get needs a string reference, got {reference!r}")
    namespace, _, rest = reference.partition(".")
    if namespace == "Parameters":
        if rest not in context.parameters:
            raise ExpressionError(f"unknown parameter {rest!r} (defined: {sorted(context.parameters)})")
        return context.parameters[rest]
    if namespace == "Execution":
        if rest not in context.execution:
            raise ExpressionError(f"unknown execution variable {rest!r} (known: {sorted(context.execution)})")
        return context.execution[rest]
    if namespace == "Steps":
        step_name, _, path = rest.partition(".")
        if not step_name or not path:
            raise ExpressionError(f"bad step reference {reference!r}")
        tokens = parse_path(path)
        if tokens[0] == "PropertyFiles":
            if len(tokens) != 2 or not isinstance(tokens[1], str):
                raise ExpressionError(f"bad property file reference {reference!r}")
            return PropertyFileRef(step_name, tokens[1])
        return walk_path(context.step_properties(step_name), tokens, f"Steps.{step_name}")
    raise ExpressionError(f"unknown reference namespace in {reference!r}")


def _resolve_join(argument: Any, context: ExpressionContext) -> str:
    if not isinstance(argument, dict) or "Values" not in argument:
        raise ExpressionError(f"Std:Join needs On and Values, got {argument!r}")
    separator = to_text(resolve(argument.get("On", ""), context))
    return separator.join(to_text(resolve(item, context)) for item in argument["Values"])


def _resolve_json_get(argument: Any, context: ExpressionContext) -> Any:
    if not isinstance(argument, dict) or "Path" not in argument:
        raise ExpressionError(f"Std:JsonGet needs Path and PropertyFile or S3Uri, got {argument!r}")
    if "PropertyFile" in argument:
        reference = resolve(argument["PropertyFile"], context)
        if not isinstance(reference, PropertyFileRef):
            raise ExpressionError(f"Std:JsonGet PropertyFile must be Steps.<step>.PropertyFiles.<name>, got {reference!r}")
        document = context.read_property_file(reference)
        if context.defer_json_get:
            return f"<JsonGet {reference.step_name}.{reference.name}:{to_text(resolve(argument['Path'], context))}>"
        where = f"property file {reference.name} of {reference.step_name}"
    elif "S3Uri" in argument:
        uri = to_text(resolve(argument["S3Uri"], context))
        if context.defer_json_get:
            return f"<JsonGet {uri}:{to_text(resolve(argument['Path'], context))}>"
        document = context.read_json_uri(uri)
        where = uri
    else:
        raise ExpressionError(f"Std:JsonGet needs PropertyFile or S3Uri, got {sorted(argument)}")
    path = to_text(resolve(argument["Path"], context))
    return walk_path(document, parse_path(path), where)
