"""The second stage of the two-stage scorer: an LLM looks only at uncertain or severe items.

The compact classifier scores everything; an item goes to Bedrock when its top two
probabilities are close (sentiment or intent) or when it is severe (safety flag, high-value
order). The LLM must answer JSON that validates against a schema; both opinions are kept and
disagreements are marked for human review.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema

from inference.replies.bedrock import BedrockClient, BedrockUnavailable
from inference.config import GenerativeConfig
from inference.replies.policy import mask_pii
from inference.replies.drafting import load_prompt, normalise_scores
from processing.taxonomy import load_taxonomy


def judgement_schema() -> dict[str, Any]:
    taxonomy = load_taxonomy()
    return {
        "type": "object",
        "required": ["sentiment", "intent", "aspects", "flags", "confidence", "rationale"],
        "additionalProperties": False,
        "properties": {
            "sentiment": {"enum": list(taxonomy.sentiments)},
            "intent": {"enum": list(taxonomy.intents)},
            "aspects": {"type": "array", "items": {"enum": list(taxonomy.aspect_names)}, "uniqueItems": True},
            "flags": {"type": "array", "items": {"enum": list(taxonomy.flags)}, "uniqueItems": True},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string", "maxLength": 500},
        },
    }


@dataclass
class SecondStageResult:
    status: str
    """'not_needed', 'skipped' (needed but no LLM: see reason), 'reviewed', or 'invalid_answer'."""
    reason: str
    first_stage: dict[str, Any]
    second_stage: dict[str, Any] | None = None
    disagreements: list[str] = field(default_factory=list)
    needs_human_review: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _margin(probabilities: dict[str, float]) -> float:
    top = sorted(probabilities.values(), reverse=True)
    return top[0] - top[1] if len(top) > 1 else 1.0


def review_reason(scores: dict[str, Any], config: GenerativeConfig, order_value: float | None = None) -> str | None:
    """Why this item needs a second look, or None."""
    if "safety_concern" in scores["flags"]:
        return "severe: safety concern"
    if order_value is not None and order_value >= config.high_value_order_threshold:
        return f"high value: order {order_value:.2f} >= {config.high_value_order_threshold:.2f}"
    for task in ("sentiment", "intent"):
        probabilities = scores[f"{task}_probabilities"]
        if probabilities and _margin(probabilities) < config.second_stage_margin:
            return f"uncertain {task}: margin {_margin(probabilities):.2f} < {config.second_stage_margin:.2f}"
    return None


def _parse_json_object(text: str) -> Any:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    return json.loads(text[start:end + 1])


def second_stage_review(record: dict[str, Any], scores: dict[str, Any] | None, config: GenerativeConfig,
                        bedrock: BedrockClient | None, order_value: float | None = None) -> SecondStageResult:
    first = normalise_scores(scores)
    summary = {k: first[k] for k in ("sentiment", "intent", "aspects", "flags")}
    reason = review_reason(first, config, order_value)
    if reason is None:
        return SecondStageResult("not_needed", "classifier confident and item not severe", summary)
    if bedrock is None:
        return SecondStageResult("skipped", f"{reason}; bedrock disabled (generative.use_bedrock=false)", summary,
                                 needs_human_review="severe" in reason)
    taxonomy = load_taxonomy()
    system = load_prompt(config.prompt_version, "second_stage_system").substitute(
        sentiments=list(taxonomy.sentiments), intents=list(taxonomy.intents), aspects=list(taxonomy.aspect_names),
        flags=list(taxonomy.flags))
    user = load_prompt(config.prompt_version, "second_stage_user").substitute(
        channel=record.get("channel", "unknown"), text=mask_pii(str(record.get("text", ""))),
        sentiment=first["sentiment"], intent=first["intent"], aspects=", ".join(first["aspects"]) or "none",
        reason=reason)
    try:
        answer = bedrock.converse(system, user, purpose="second_stage")
    except BedrockUnavailable as exc:
        return SecondStageResult("skipped", f"{reason}; bedrock unavailable: {exc}", summary, needs_human_review=True)
    try:
        judgement = _parse_json_object(answer.text)
        jsonschema.validate(judgement, judgement_schema())
    except (ValueError, jsonschema.ValidationError) as exc:
        message = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
        return SecondStageResult("invalid_answer", f"{reason}; LLM answer rejected: {message}", summary,
                                 needs_human_review=True)
    disagreements = [task for task in ("sentiment", "intent") if judgement[task] != first[task]]
    if set(judgement["aspects"]) != set(first["aspects"]):
        disagreements.append("aspects")
    return SecondStageResult("reviewed", reason, summary, judgement, disagreements,
                             needs_human_review=bool(disagreements) or "severe" in reason)
