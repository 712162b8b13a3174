"""Check a pipeline definition against botocore's SageMaker service model, offline.

AWS's published pipeline-definition JSON schema is stale (it rejects valid SDK 3.27 output),
so each step's `Arguments` is checked against the input shape of the API the step calls:
CreateProcessingJob for a Processing step (minus ProcessingJobName, which the service
fills), CreateTrainingJob for a Training step, CreateModelPackage for RegisterModel, and
so on. The walk is recursive: required members, unknown members, JSON types, enums, and
min/max lengths and values. A pipeline expression (`Get`, `Std:Join`, `Std:JsonGet`) is
accepted wherever the shape wants a scalar; where it reads a parameter, the parameter's
default value is checked against that scalar shape too. References are checked as well:
`Get: Parameters.X` needs a declared X, `Get: Steps.S...` and `DependsOn` need a step S,
and a JsonGet's property file must be declared on its step.

`validate_definition(definition) -> list[str]`: one readable line per problem, [] when clean.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Iterator

import botocore.session

EXPRESSION_KEYS = ("Get", "Std:Join", "Std:JsonGet")
"""Keys of a pipeline expression object (a dict with exactly one of them)."""

DEFINITION_VERSION = "2020-12-01"


@dataclass(frozen=True)
class StepApi:
    """The SageMaker API a step type calls, and the request members the service fills."""

    operation: str
    filled_by_service: tuple[str, ...] = ()


STEP_APIS: dict[str, StepApi] = {
    "Processing": StepApi("CreateProcessingJob", ("ProcessingJobName",)),
    "Training": StepApi("CreateTrainingJob", ("TrainingJobName",)),
    "Transform": StepApi("CreateTransformJob", ("TransformJobName",)),
    "Tuning": StepApi("CreateHyperParameterTuningJob", ("HyperParameterTuningJobName",)),
    "Model": StepApi("CreateModel", ("ModelName",)),
    "RegisterModel": StepApi("CreateModelPackage", ()),
}
"""Step types whose Arguments are an API request; other types are checked structurally."""

CONDITION_TYPES = {
    "Equals", "GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo",
    "In", "Not", "Or",
}
PARAMETER_TYPES = {"String": str, "Integer": int, "Float": (int, float), "Boolean": bool}
STEP_NAME_PATTERN = re.compile(r"[A-Za-z0-9\-_]{1,64}")
"""SageMaker pipeline step names (service limit)."""
STEP_REFERENCE = re.compile(r"Steps\.([A-Za-z0-9\-_]+)(?:\.|$)")


@functools.lru_cache(maxsize=1)
def sagemaker_service_model():
    """botocore's SageMaker service model (read from the installed botocore, no network)."""
    return botocore.session.get_session().get_service_model("sagemaker")


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSION_KEYS


def _python_pattern(pattern: str) -> re.Pattern | None:
    """The service's regex as a Python pattern, or None where Python cannot read it."""
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


_compiled_patterns: dict[str, re.Pattern | None] = {}


class _Walker:
    """Walks one value against one botocore shape and collects problems."""

    def __init__(self, parameters: dict[str, dict]):
        self.parameters = parameters
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def check(self, value: Any, shape, path: str) -> None:
        if is_expression(value):
            self._check_expression(value, shape, path)
            return
        kind = shape.type_name
        if kind == "structure":
            self._check_structure(value, shape, path)
        elif kind == "list":
            self._check_list(value, shape, path)
        elif kind == "map":
            self._check_map(value, shape, path)
        else:
            self._check_scalar(value, shape, path)

    def _check_expression(self, value: dict, shape, path: str) -> None:
        if shape.type_name in ("structure", "list", "map"):
            self.error(path, f"a pipeline expression cannot stand for a {shape.type_name} ({shape.name})")
            return
        reference = value.get("Get")
        if isinstance(reference, str) and reference.startswith("Parameters."):
            parameter = self.parameters.get(reference.split(".", 1)[1])
            if parameter is not None and "DefaultValue" in parameter:
                self._check_scalar(
                    parameter["DefaultValue"], shape, f"{path} (default of parameter {parameter['Name']})"
                )

    def _check_structure(self, value: Any, shape, path: str) -> None:
        if not isinstance(value, dict):
            self.error(path, f"expected an object ({shape.name}), got {type(value).__name__}")
            return
        for name in shape.required_members:
            if name not in value:
                self.error(path, f"missing required member {name!r} of {shape.name}")
        members = shape.members
        for name, member_value in value.items():
            if name not in members:
                self.error(f"{path}.{name}", f"unknown member of {shape.name}; known: {sorted(members)}")
                continue
            self.check(member_value, members[name], f"{path}.{name}")

    def _check_length(self, size: int, shape, path: str, unit: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.error(path, f"{size} {unit}, fewer than the minimum {low} of {shape.name}")
        if high is not None and size > high:
            self.error(path, f"{size} {unit}, more than the maximum {high} of {shape.name}")

    def _check_list(self, value: Any, shape, path: str) -> None:
        if not isinstance(value, list):
            self.error(path, f"expected a list ({shape.name}), got {type(value).__name__}")
            return
        self._check_length(len(value), shape, path, "items")
        for index, item in enumerate(value):
            self.check(item, shape.member, f"{path}[{index}]")

    def _check_map(self, value: Any, shape, path: str) -> None:
        if not isinstance(value, dict):
            self.error(path, f"expected a map ({shape.name}), got {type(value).__name__}")
            return
        self._check_length(len(value), shape, path, "entries")
        for key, item in value.items():
            self.check(key, shape.key, f"{path} key {key!r}")
            self.check(item, shape.value, f"{path}[{key!r}]")

    def _check_scalar(self, value: Any, shape, path: str) -> None:
        kind = shape.type_name
        if kind == "string":
            self._check_string(value, shape, path)
        elif kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(path, f"expected an integer ({shape.name}), got {value!r}")
            else:
                self._check_range(value, shape, path)
        elif kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.error(path, f"expected a number ({shape.name}), got {value!r}")
            else:
                self._check_range(value, shape, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.error(path, f"expected true/false ({shape.name}), got {value!r}")
        elif kind == "timestamp":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                self.error(path, f"expected a timestamp ({shape.name}), got {value!r}")
        elif kind == "blob":
            if not isinstance(value, str):
                self.error(path, f"expected base64 text ({shape.name}), got {type(value).__name__}")
        else:  # pragma: no cover - botocore has no other scalar types today
            self.error(path, f"shape type {kind!r} of {shape.name} is not understood by the validator")

    def _check_range(self, value: float, shape, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            self.error(path, f"{value} is below the minimum {low} of {shape.name}")
        if high is not None and value > high:
            self.error(path, f"{value} is above the maximum {high} of {shape.name}")

    def _check_string(self, value: Any, shape, path: str) -> None:
        if not isinstance(value, str):
            self.error(path, f"expected a string ({shape.name}), got {type(value).__name__} {value!r}")
            return
        enum = shape.enum
        if enum and value not in enum:
            shown = enum if len(enum) <= 12 else enum[:12] + ["..."]
            self.error(path, f"{value!r} is not one of the values of {shape.name}: {shown}")
        self._check_length(len(value), shape, path, "characters")
        pattern_text = shape.metadata.get("pattern")
        if pattern_text:
            if pattern_text not in _compiled_patterns:
                _compiled_patterns[pattern_text] = _python_pattern(pattern_text)
            pattern = _compiled_patterns[pattern_text]
            if pattern is not None and not pattern.fullmatch(value):
                self.error(path, f"{value!r} does not match the pattern {pattern_text!r} of {shape.name}")


def _iter_steps(steps: list, path: str) -> Iterator[tuple[dict, str]]:
    """Every step, including those nested in Condition branches, with its path."""
    for index, step in enumerate(steps):
        step_path = f"{path}[{index}]"
        if isinstance(step, dict):
            yield step, step_path
            if step.get("Type") == "Condition":
                arguments = step.get("Arguments") or {}
                for branch in ("IfSteps", "ElseSteps"):
                    yield from _iter_steps(arguments.get(branch) or [], f"{step_path}.Arguments.{branch}")


def _iter_expressions(value: Any, path: str) -> Iterator[tuple[dict, str]]:
    if isinstance(value, dict):
        if is_expression(value):
            yield value, path
        for key, item in value.items():
            yield from _iter_expressions(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _iter_expressions(item, f"{path}[{index}]")


def _check_parameters(parameters: Any, errors: list[str]) -> dict[str, dict]:
    declared: dict[str, dict] = {}
    if not isinstance(parameters, list):
        errors.append("Parameters: expected a list")
        return declared
    for index, parameter in enumerate(parameters):
        path = f"Parameters[{index}]"
        if not isinstance(parameter, dict) or "Name" not in parameter or "Type" not in parameter:
            errors.append(f"{path}: a parameter needs Name and Type")
            continue
        name, kind = parameter["Name"], parameter["Type"]
        if name in declared:
            errors.append(f"{path}: parameter {name!r} is declared twice")
        declared[name] = parameter
        if kind not in PARAMETER_TYPES:
            errors.append(f"{path}: type {kind!r} of {name!r} is not one of {sorted(PARAMETER_TYPES)}")
            continue
        default = parameter.get("DefaultValue")
        expected = PARAMETER_TYPES[kind]
        if default is not None and (
            not isinstance(default, expected) or (kind != "Boolean" and isinstance(default, bool))
        ):
            errors.append(f"{path}: default {default!r} of {name!r} is not a {kind}")
        enum_values = parameter.get("EnumValues")
        if enum_values is not None and default is not None and default not in enum_values:
            errors.append(f"{path}: default {default!r} of {name!r} is not among its EnumValues {enum_values}")
    return declared


def _check_expression_references(
    expression: dict, path: str, parameters: dict, steps: dict[str, dict], errors: list[str]
) -> None:
    key, body = next(iter(expression.items()))
    if key == "Get":
        if not isinstance(body, str):
            errors.append(f"{path}: Get needs a string, got {body!r}")
        elif body.startswith("Parameters."):
            if body.split(".", 1)[1] not in parameters:
                errors.append(f"{path}: {body} refers to an undeclared parameter")
        elif body.startswith("Steps."):
            match = STEP_REFERENCE.match(body)
            if not match or match.group(1) not in steps:
                errors.append(f"{path}: {body} refers to an unknown step")
            elif ".PropertyFiles." in body:
                file_name = body.split(".PropertyFiles.", 1)[1]
                declared = {f.get("PropertyFileName") for f in steps[match.group(1)].get("PropertyFiles") or []}
                if file_name not in declared:
                    errors.append(f"{path}: step {match.group(1)} declares no property file {file_name!r}")
        elif not body.startswith(("Execution.", "Pipeline.")):
            errors.append(f"{path}: cannot resolve {body!r} (Parameters., Steps., Execution. or Pipeline.)")
    elif key == "Std:Join":
        if not isinstance(body, dict) or not isinstance(body.get("On"), str) or not isinstance(body.get("Values"), list):
            errors.append(f"{path}: Std:Join needs On (string) and Values (list)")
    elif key == "Std:JsonGet":
        if not isinstance(body, dict) or not isinstance(body.get("Path"), str) or not is_expression(body.get("PropertyFile")):
            errors.append(f"{path}: Std:JsonGet needs Path (string) and PropertyFile (a Get expression)")


def _check_condition_step(step: dict, path: str, errors: list[str]) -> None:
    arguments = step.get("Arguments")
    if not isinstance(arguments, dict) or not isinstance(arguments.get("Conditions"), list):
        errors.append(f"{path}.Arguments: a Condition step needs a Conditions list")
        return
    for index, condition in enumerate(arguments["Conditions"]):
        condition_path = f"{path}.Arguments.Conditions[{index}]"
        if not isinstance(condition, dict) or condition.get("Type") not in CONDITION_TYPES:
            errors.append(f"{condition_path}: Type must be one of {sorted(CONDITION_TYPES)}")
        elif condition["Type"] not in ("Not", "Or", "In") and not {"LeftValue", "RightValue"} <= set(condition):
            errors.append(f"{condition_path}: a {condition['Type']} condition needs LeftValue and RightValue")
    for branch in ("IfSteps", "ElseSteps"):
        if not isinstance(arguments.get(branch, []), list):
            errors.append(f"{path}.Arguments.{branch}: expected a list of steps")


def validate_definition(definition: dict) -> list[str]:
    """Problems found in a pipeline definition (parsed JSON); an empty list means valid."""
    errors: list[str] = []
    if not isinstance(definition, dict):
        return ["definition: expected a JSON object"]
    if definition.get("Version") != DEFINITION_VERSION:
        errors.append(f"Version: expected {DEFINITION_VERSION!r}, got {definition.get('Version')!r}")
    parameters = _check_parameters(definition.get("Parameters", []), errors)
    top_steps = definition.get("Steps")
    if not isinstance(top_steps, list) or not top_steps:
        errors.append("Steps: expected a non-empty list")
        return errors

    all_steps = list(_iter_steps(top_steps, "Steps"))
    by_name: dict[str, dict] = {}
    for step, path in all_steps:
        name = step.get("Name")
        if not isinstance(name, str) or not STEP_NAME_PATTERN.fullmatch(name):
            errors.append(f"{path}.Name: {name!r} is not a valid step name")
        elif name in by_name:
            errors.append(f"{path}.Name: step name {name!r} is used twice")
        else:
            by_name[name] = step

    model = sagemaker_service_model()
    walker = _Walker(parameters)
    for step, path in all_steps:
        label = f"{path} ({step.get('Name')})"
        for dependency in step.get("DependsOn") or []:
            if dependency not in by_name:
                errors.append(f"{label}.DependsOn: unknown step {dependency!r}")
        step_type = step.get("Type")
        if step_type in STEP_APIS:
            api = STEP_APIS[step_type]
            arguments = step.get("Arguments")
            if not isinstance(arguments, dict):
                errors.append(f"{label}.Arguments: expected the {api.operation} request object")
                continue
            shape = model.operation_model(api.operation).input_shape
            for name in shape.required_members:
                if name not in arguments and name not in api.filled_by_service:
                    walker.error(f"{label}.Arguments", f"missing required member {name!r} of {api.operation}")
            for name, value in arguments.items():
                member_path = f"{label}.Arguments.{name}"
                if name not in shape.members:
                    walker.error(member_path, f"unknown member of {api.operation}")
                else:
                    walker.check(value, shape.members[name], member_path)
        elif step_type == "Condition":
            _check_condition_step(step, label, errors)
        elif step_type == "Fail":
            message = (step.get("Arguments") or {}).get("ErrorMessage", "")
            if not isinstance(message, str) and not is_expression(message):
                errors.append(f"{label}.Arguments.ErrorMessage: expected a string or an expression")
        # A Condition's branches are steps of their own, checked on their own turn.
        scanned = (step.get("Arguments") or {}).get("Conditions") if step_type == "Condition" else step.get("Arguments")
        for expression, expression_path in _iter_expressions(scanned, f"{label}.Arguments"):
            _check_expression_references(expression, expression_path, parameters, by_name, errors)
    errors.extend(walker.errors)
    return errors
