"""Pipeline parameters: defaults from the definition, overridden by `Name=Value` strings."""
from __future__ import annotations

from typing import Any

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class ParameterError(ValueError):
    """An override for an undeclared parameter, or a value that does not fit its type."""


def _convert(name: str, kind: str, value: Any) -> Any:
    if kind == "String":
        return value if isinstance(value, str) else str(value)
    try:
        if kind == "Integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "Float":
            return float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter {name} is {kind}: cannot use {value!r}") from None
    if kind == "Boolean":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ParameterError(f"parameter {name} is Boolean: use true or false, not {value!r}")
    raise ParameterError(f"parameter {name} has unsupported type {kind!r}")


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
