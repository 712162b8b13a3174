"""The registration gate: an absolute quality bar plus no regression against the champion.

The pipeline's `CheckModelGate` condition reads `gate.macro_f1` and `gate.no_regression`
from evaluation.json, and `ModelGateFailed` shows `gate.message`, so the message must say
which check missed and by how much.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

from training.metrics import SCORED_TASKS, model_score

GATE_METRIC = "macro_f1"
"""Name of the gate metric in evaluation.json (`gate.macro_f1`): the test split's model score,
the same `training.metrics.model_score` that chooses training's saved epoch on validation."""


@dataclass
class GateDecision:
    metric: str
    macro_f1: float
    """Model score: mean headline metric (sentiment and intent macro-F1, aspect micro-F1) of the
    tasks that have labeled test rows; 0.0 when none has (the pipeline's JsonGet condition needs
    a number, and nothing scored must not pass)."""
    tasks: list[str]
    """Which tasks entered the mean."""
    threshold: float
    champion_macro_f1: Optional[float]
    champion: Optional[str]
    tolerance: float
    no_regression: bool
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_gate(
    task_scores: Mapping[str, Optional[float]],
    threshold: float,
    tolerance: float,
    champion_task_scores: Optional[Mapping[str, Optional[float]]] = None,
    champion_name: Optional[str] = None,
) -> GateDecision:
    """Pass when the candidate reaches `threshold` and is not worse than champion - tolerance.

    `task_scores` maps a task to its headline metric (None: not measured). The champion's
    score is averaged over the same tasks as the candidate's, so both are judged on the same rows.
    """
    macro_f1, used = model_score(task_scores)
    champion_macro_f1 = None
    if champion_task_scores is not None and used:
        champion_used = {task: champion_task_scores.get(task) for task in used}
        if all(score is not None for score in champion_used.values()):
            champion_macro_f1, _ = model_score(champion_used)
    problems = []
    if macro_f1 is None:
        problems.append(
            f"{GATE_METRIC} cannot be computed: the test split has no rows labeled for {' or '.join(SCORED_TASKS)}"
        )
        meets_threshold = False
    else:
        meets_threshold = macro_f1 >= threshold
        if not meets_threshold:
            problems.append(
                f"{GATE_METRIC} {macro_f1:.3f} is {threshold - macro_f1:.3f} below the threshold {threshold:.3f}"
            )
    no_regression = True
    if champion_macro_f1 is not None and macro_f1 is not None:
        no_regression = macro_f1 >= champion_macro_f1 - tolerance
        if not no_regression:
            label = f"champion {champion_name}" if champion_name else "champion"
            problems.append(
                f"{GATE_METRIC} {macro_f1:.3f} regressed {champion_macro_f1 - macro_f1:.3f} against "
                f"{label} {champion_macro_f1:.3f} (tolerance {tolerance:.3f})"
            )
    passed = meets_threshold and no_regression
    return GateDecision(
        metric=GATE_METRIC,
        macro_f1=0.0 if macro_f1 is None else macro_f1,
        tasks=used,
        threshold=float(threshold),
        champion_macro_f1=champion_macro_f1,
        champion=champion_name,
        tolerance=float(tolerance),
        no_regression=no_regression,
        passed=passed,
        message="passed" if passed else "; ".join(problems),
    )
