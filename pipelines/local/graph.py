"""Steps of a definition, flattened out of Condition branches and ordered by their dependencies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.local.expressions import referenced_steps

CONDITION = "Condition"
BRANCH_KEYS = ("IfSteps", "ElseSteps")


class DefinitionError(ValueError):
    """A definition the runner cannot execute (duplicate names, unknown or cyclic dependencies)."""


@dataclass
class StepSpec:
    name: str
    type: str
    definition: dict[str, Any]
    """The step's JSON object as it appears in the definition."""
    depends_on: set[str] = field(default_factory=set)
    """Steps that must finish first: data references, DependsOn, and the enclosing Condition."""
    branch: tuple[str, str] | None = None
    """(Condition step name, "IfSteps" | "ElseSteps") for a step inside a condition branch."""

    @property
    def arguments(self) -> dict[str, Any]:
        if self.type == CONDITION:
            return {k: v for k, v in self.definition.get("Arguments", {}).items() if k not in BRANCH_KEYS}
        return self.definition.get("Arguments", {})


def _flatten(steps: list[dict[str, Any]], branch: tuple[str, str] | None, out: list[StepSpec]) -> None:
    for step in steps:
        if not isinstance(step, dict) or "Name" not in step or "Type" not in step:
            raise DefinitionError(f"every step needs Name and Type, got {str(step)[:200]}")
        spec = StepSpec(step["Name"], step["Type"], step, branch=branch)
        out.append(spec)
        if spec.type == CONDITION:
            arguments = step.get("Arguments", {})
            for key in BRANCH_KEYS:
                _flatten(arguments.get(key, []) or [], (spec.name, key), out)


def build_graph(definition: dict[str, Any]) -> list[StepSpec]:
    """All steps in execution order (dependencies first; definition order breaks ties)."""
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise DefinitionError("a pipeline definition is a JSON object with a Steps list")
    specs: list[StepSpec] = []
    _flatten(definition["Steps"], None, specs)
    by_name: dict[str, StepSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise DefinitionError(f"step name {spec.name!r} is used twice")
        by_name[spec.name] = spec
    for spec in specs:
        spec.depends_on |= referenced_steps(spec.arguments)
        spec.depends_on |= referenced_steps(spec.definition.get("PropertyFiles", []))
        spec.depends_on |= set(spec.definition.get("DependsOn", []) or [])
        if spec.branch:
            spec.depends_on.add(spec.branch[0])
        spec.depends_on.discard(spec.name)
        unknown = spec.depends_on - by_name.keys()
        if unknown:
            raise DefinitionError(f"step {spec.name} depends on unknown step(s) {sorted(unknown)}")
    return _topological(specs)


def _topological(specs: list[StepSpec]) -> list[StepSpec]:
    position = {spec.name: index for index, spec in enumerate(specs)}
    remaining = {spec.name: set(spec.depends_on) for spec in specs}
    ordered: list[StepSpec] = []
    by_name = {spec.name: spec for spec in specs}
    while remaining:
        ready = sorted((name for name, deps in remaining.items() if not deps), key=position.get)
        if not ready:
            raise DefinitionError(f"dependency cycle among steps {sorted(remaining)}")
        name = ready[0]
        ordered.append(by_name[name])
        del remaining[name]
        for deps in remaining.values():
            deps.discard(name)
    return ordered
