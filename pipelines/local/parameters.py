"""Pipeline parameters: defaults from the definition, overridden by `Name=Value` strings."""
from __future__ import annotations

from typing import Any

from processing.settings import SettingsError, parse_value

PARAMETER_TYPES: dict[str, type] = {"String": str, "Integer": int, "Float": float, "Boolean": bool}
"""SageMaker pipeline parameter type -> the Python type its values are parsed to."""


class ParameterError(ValueError):
    """An override for an undeclared parameter, or a value that does not fit its type."""


def _convert(name: str, kind: str, value: Any) -> Any:
    """The value parsed by the one settings parser (processing.settings), so `--param` and `--set` agree."""
    if kind not in PARAMETER_TYPES:
        raise ParameterError(f"parameter {name} has unsupported type {kind!r}")
    try:
        return parse_value(PARAMETER_TYPES[kind], value, name)
    except SettingsError as exc:
        raise ParameterError(f"parameter {name} is {kind}: {exc}") from None


def resolve_parameters(declared: list[dict[str, Any]], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Typed value of every declared parameter: the override if given, else the default."""
    overrides = dict(overrides or {})
    values: dict[str, Any] = {}
    for parameter in declared:
        name, kind = parameter["Name"], parameter.get("Type", "String")
        if name in overrides:
            values[name] = _convert(name, kind, overrides.pop(name))
        elif "DefaultValue" in parameter:
            values[name] = _convert(name, kind, parameter["DefaultValue"])
        else:
            raise ParameterError(f"parameter {name} has no default: pass --param {name}=VALUE")
    if overrides:
        raise ParameterError(f"unknown parameter(s) {sorted(overrides)}; the definition declares "
                             f"{[p['Name'] for p in declared]}")
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["Name=Value", ...]` (the CLI's `--param`) as a dict; an item without `=` or a name is refused."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param {item!r} must look like Name=Value")
        parsed[name.strip()] = value.strip()
    return parsed
