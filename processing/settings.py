"""The one way settings are typed, validated and overridden, for every section and every entry point.

Each layer declares its configuration section as a `@settings_section` class (a pydantic dataclass:
attribute access and `dataclasses.fields()` as before, but every value is validated when the section
is made and whenever a field is assigned). Overrides arrive as strings from four places, all parsed
here and nowhere else:

- `--set section.field=value` on `fbrain` and on every job entry point (the pipeline definition
  passes each job its whole section this way, `section_arguments`);
- a JSON / YAML file of `{section: {field: value}}` (`apply_mapping`);
- environment variables `FBRAIN__SECTION__FIELD=value` (`environment_overrides`);
- SageMaker hyperparameters (`{field: "value"}`, training's whole section).

An unknown section or field, or a value that does not fit the field's type (`--set training.epochs=abc`,
`--set training.class_weighting=flase`), is a `SettingsError` naming the key and what it accepts.
This module lives in the lowest layer so that every job can parse its own section without importing
`pipelines/` (imports follow the data: processing -> training -> inference -> monitoring).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import typing
from typing import Any, Iterable, Mapping, MutableMapping

import pydantic
from pydantic import ConfigDict, TypeAdapter
from pydantic.dataclasses import dataclass as pydantic_dataclass

ENV_PREFIX = "FBRAIN__"
"""`FBRAIN__TRAINING__EPOCHS=2` overrides training.epochs (double underscores: field names contain single ones)."""
SET_FLAG = "--set"

_SECTION_CONFIG = ConfigDict(
    validate_assignment=True,   # `section.field = value` is checked too, not only construction
    extra="forbid",             # a misspelt field is an error, never silently ignored
    coerce_numbers_to_str=True,  # YAML `taxonomy_version: 1` is the string "1"
)


class SettingsError(ValueError):
    """A setting that does not exist, or a value that does not fit it; the message names the key."""


def settings_section(cls: type) -> type:
    """Decorator of a configuration section: a validated pydantic dataclass (see the module docstring)."""
    return pydantic_dataclass(cls, config=_SECTION_CONFIG)


# ------------------------------------------------------------------------- one value
def _is_container(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return origin in (dict, list, tuple, set, frozenset)


def _describe_error(dotted: str, value: Any, error: pydantic.ValidationError) -> str:
    details = "; ".join(item["msg"] for item in error.errors(include_url=False))
    return f"{dotted}={value!r} is not valid: {details}"


def field_types(section: Any) -> dict[str, Any]:
    """Field name -> resolved type annotation of a section (class or instance)."""
    cls = section if isinstance(section, type) else type(section)
    hints = typing.get_type_hints(cls)
    return {item.name: hints[item.name] for item in dataclasses.fields(cls)}


def parse_value(annotation: Any, value: Any, dotted: str) -> Any:
    """`value` (often a string) converted to `annotation` with pydantic's rules, or a SettingsError.

    Strings for dict / list fields are read as JSON; booleans accept true/false/1/0/yes/no/on/off only."""
    if isinstance(value, str) and _is_container(annotation):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{dotted}={value!r} is not valid: expected JSON ({exc.msg})") from None
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            value = json.loads(value)  # the SageMaker SDK JSON-quotes some string hyperparameters
        except json.JSONDecodeError:
            pass
    try:
        return _adapter(annotation).validate_python(value)
    except pydantic.ValidationError as exc:
        raise SettingsError(_describe_error(dotted, value, exc)) from None


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation, config=ConfigDict(coerce_numbers_to_str=True))


def value_to_string(value: Any) -> str:
    """The string form `parse_value` reads back to the same value (booleans lower-case, containers JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=dataclasses.asdict)  # lists of sub-sections too
    return str(value)


# ------------------------------------------------------------------------- sections
def set_field(section: Any, name: str, value: Any, dotted: str | None = None) -> None:
    """Assign `value` to `section.name`, converted and validated; unknown names are a SettingsError."""
    dotted = dotted or name
    types = field_types(section)
    if name not in types:
        raise SettingsError(f"unknown setting {dotted!r}; {type(section).__name__} has: {', '.join(sorted(types))}")
    parsed = parse_value(types[name], value, dotted)
    try:
        setattr(section, name, parsed)
    except pydantic.ValidationError as exc:  # a field validator of the section itself
        raise SettingsError(_describe_error(dotted, value, exc)) from None


def apply_values(section: Any, values: Mapping[str, Any], section_name: str,
                 ignore_prefixes: tuple[str, ...] = ()) -> Any:
    """Set every `field: value` of a mapping on one section (hyperparameters, a file's section)."""
    for key, value in values.items():
        if ignore_prefixes and key.startswith(ignore_prefixes):
            continue
        set_field(section, key.replace("-", "_"), value, f"{section_name}.{key}")
    return section


def _split_dotted(dotted: str, sections: Mapping[str, Any]) -> tuple[Any, str]:
    section_name, _, field_name = dotted.strip().partition(".")
    if section_name not in sections or not field_name:
        raise SettingsError(f"unknown setting {dotted!r}: use SECTION.FIELD with SECTION in {sorted(sections)}")
    return sections[section_name], field_name


def apply_override(sections: Mapping[str, Any], dotted: str, value: Any) -> None:
    """`section.field` = value, on the section of that name."""
    section, field_name = _split_dotted(dotted, sections)
    set_field(section, field_name, value, dotted.strip())


def apply_overrides(sections: Mapping[str, Any], items: Iterable[str], origin: str = "--set") -> None:
    """Apply `section.field=value` strings in order (later wins)."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{origin} {item!r} must look like section.field=value")
        apply_override(sections, key.strip(), value.strip())


def apply_mapping(sections: Mapping[str, Any], data: Mapping[str, Any], origin: str) -> None:
    """Apply a `{section: {field: value}}` document (a config file)."""
    for section_name, values in data.items():
        if section_name not in sections:
            raise SettingsError(f"{origin}: unknown section {section_name!r}; sections: {sorted(sections)}")
        if not isinstance(values, Mapping):
            raise SettingsError(f"{origin}: section {section_name!r} must be a mapping of field: value")
        apply_values(sections[section_name], values, section_name)


def environment_overrides(sections: Mapping[str, Any] | None = None,
                          environ: Mapping[str, str] | None = None) -> list[str]:
    """`section.field=value` items from `FBRAIN__SECTION__FIELD` variables; with `sections`, only theirs.

    A job given only its own sections ignores variables of other sections (the pipeline passes one
    environment to every job); `fbrain` passes all sections, so a misspelt section is an error there."""
    items = []
    for name, value in sorted((environ if environ is not None else os.environ).items()):
        if not name.startswith(ENV_PREFIX):
            continue
        section_name, sep, field_name = name[len(ENV_PREFIX):].lower().partition("__")
        if not sep or not field_name:
            raise SettingsError(f"environment variable {name} must look like {ENV_PREFIX}SECTION__FIELD")
        if sections is not None and section_name not in sections:
            continue
        items.append(f"{section_name}.{field_name}={value}")
    return items


def environment_variables(section_name: str, section: Any, names: Iterable[str] | None = None) -> dict[str, str]:
    """`FBRAIN__SECTION__FIELD` variables carrying a section's values (e.g. into a serving container)."""
    chosen = names if names is not None else [item.name for item in dataclasses.fields(section)]
    return {f"{ENV_PREFIX}{section_name.upper()}__{name.upper()}": value_to_string(getattr(section, name))
            for name in chosen}


def section_arguments(section_name: str, section: Any, replace: Mapping[str, Any] | None = None) -> list:
    """`["--set=section.field=value", ...]`, one item per field of a section: how a job receives its whole section.

    One item per field (not `--set` and a value) because SageMaker allows at most 100 container arguments.
    `replace` puts another item (e.g. a pipeline expression joining `--set=section.field=` to a parameter) in a
    field's place."""
    arguments: list = []
    for item in dataclasses.fields(section):
        if replace and item.name in replace:
            arguments.append(replace[item.name])
        else:
            arguments.append(f"{SET_FLAG}={section_name}.{item.name}={value_to_string(getattr(section, item.name))}")
    return arguments


def add_settings_argument(parser: argparse.ArgumentParser, sections: Iterable[str]) -> None:
    """The `--set section.field=value` flag of a job entry point."""
    names = ", ".join(sections)
    parser.add_argument(SET_FLAG, dest="settings", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help=f"override a setting of {names} (repeatable; FBRAIN__SECTION__FIELD variables too)")


def load_sections(sections: MutableMapping[str, Any], settings: Iterable[str] = (),
                  environ: Mapping[str, str] | None = None) -> Mapping[str, Any]:
    """A job's sections with environment variables, then `--set` items, applied (later wins)."""
    apply_overrides(sections, environment_overrides(sections, environ), origin="environment")
    apply_overrides(sections, settings)
    return sections
