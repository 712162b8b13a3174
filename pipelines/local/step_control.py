"""Condition and Fail steps: evaluated in the runner, no job."""
from __future__ import annotations

from typing import Any

from pipelines.local.expressions import ExpressionContext, resolve, to_text
from pipelines.local.jobs import StepFailure, StepResult

_COMPARISONS = {
    "Equals": lambda left, right: left == right,
    "GreaterThan": lambda left, right: left > right,
    "GreaterThanOrEqualTo": lambda left, right: left >= right,
    "LessThan": lambda left, right: left < right,
    "LessThanOrEqualTo": lambda left, right: left <= right,
}
_BOOLEAN_TEXT = {"true": True, "false": False}


class ConditionError(ValueError):
    pass


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    """Bring two resolved values to one type: JSON booleans vs "true"/"false", numbers vs numeric strings."""
    if isinstance(left, bool) != isinstance(right, bool):
        other = right if isinstance(left, bool) else left
        if isinstance(other, str) and other.lower() in _BOOLEAN_TEXT:
            other = _BOOLEAN_TEXT[other.lower()]
            return (left, other) if isinstance(left, bool) else (other, right)
        return left, right
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, str) or isinstance(right, numbers) and isinstance(left, str):
        try:
            return float(left), float(right)
        except ValueError:
            raise ConditionError(f"cannot compare {left!r} with {right!r}") from None
    return left, right


def evaluate(condition: dict[str, Any], context: ExpressionContext) -> bool:
    kind = condition.get("Type")
    if kind in _COMPARISONS:
        left, right = _comparable(resolve(condition["LeftValue"], context), resolve(condition["RightValue"], context))
        try:
            return bool(_COMPARISONS[kind](left, right))
        except TypeError:
            raise ConditionError(f"{kind}: cannot compare {left!r} with {right!r}") from None
    if kind == "In":
        query = resolve(condition["QueryValue"], context)
        for value in condition["Values"]:
            left, right = _comparable(query, resolve(value, context))
            if left == right:
                return True
        return False
    if kind == "Not":
        return not evaluate(condition["Condition"], context)
    if kind == "Or":
        return any(evaluate(item, context) for item in condition["Conditions"])
    raise ConditionError(f"unsupported condition type {kind!r}")


def run_condition(arguments: dict[str, Any], context: ExpressionContext) -> StepResult:
    """All Conditions must hold (SageMaker ANDs the list); Outcome is "True" or "False"."""
    try:
        outcome = all(evaluate(condition, context) for condition in arguments.get("Conditions", []))
    except (ConditionError, KeyError) as error:
        raise StepFailure(f"condition could not be evaluated: {error}") from None
    branch = "IfSteps" if outcome else "ElseSteps"
    return StepResult(properties={"Outcome": "True" if outcome else "False"},
                      outputs={"outcome": outcome, "branch": branch})


def run_fail(arguments: dict[str, Any], context: ExpressionContext) -> StepResult:
    """A Fail step always fails the execution, with its resolved ErrorMessage as the reason."""
    message = to_text(resolve(arguments.get("ErrorMessage", ""), context)) or "Fail step reached"
    raise StepFailure(message)
