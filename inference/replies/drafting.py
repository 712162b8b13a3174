"""Reply drafting: Bedrock when configured, playbook templates otherwise, policy-checked always.

The text is PII-masked before anything else sees it, so neither the Bedrock request nor the
draft can carry the customer's personal data. Every draft waits for human approval.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any

from inference.replies.bedrock import BedrockClient, BedrockUnavailable
from inference.config import GenerativeConfig
from inference.replies.policy import PolicyResult, check_reply, mask_pii
from processing.taxonomy import load_taxonomy

LOG = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
REPLY_LANGUAGES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German"}
PENDING_REVIEW = "pending_human_review"


@lru_cache(maxsize=None)
def load_playbooks(version: str) -> dict[str, Any]:
    path = HERE / "playbooks" / f"playbooks_{version}.json"
    if not path.exists():
        raise ValueError(f"playbook version {version!r} not found at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def load_prompt(version: str, name: str) -> Template:
    path = HERE / "prompts" / version / f"{name}.txt"
    if not path.exists():
        raise ValueError(f"prompt {name!r} of version {version!r} not found at {path}")
    return Template(path.read_text(encoding="utf-8"))


def normalise_scores(scores: dict[str, Any] | None) -> dict[str, Any]:
    """Accept the endpoint's response shape or plain labels; return labels + probabilities.

    Aspects come most likely first (the endpoint lists them in taxonomy order with scores);
    flags may be a list of raised flags or the endpoint's {flag: bool} map.
    """
    scores = scores or {}

    def label_of(value):
        return value.get("label") if isinstance(value, dict) else value

    def probabilities_of(value):
        return value.get("probabilities", {}) if isinstance(value, dict) else {}

    aspects = scores.get("aspects") or []
    if isinstance(aspects, dict):
        ranking = aspects.get("scores", {})
        aspects = sorted(aspects.get("labels", []), key=lambda name: -ranking.get(name, 0.0))
    flags = scores.get("flags") or []
    if isinstance(flags, dict):
        flags = [name for name, raised in flags.items() if raised]
    return {
        "sentiment": label_of(scores.get("sentiment")) or "neutral",
        "intent": label_of(scores.get("intent")) or "other",
        "aspects": list(aspects),
        "flags": list(flags),
        "sentiment_probabilities": probabilities_of(scores.get("sentiment")),
        "intent_probabilities": probabilities_of(scores.get("intent")),
    }


@dataclass
class Draft:
    feedback_id: str
    text: str
    language: str
    generator: str
    """'template' (deterministic, playbook-based) or 'bedrock:<model id>'."""
    policy: PolicyResult
    approval_status: str
    owner_teams: list[str]
    prompt_version: str
    playbook_version: str
    fallback_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ResponseService:
    def __init__(self, config: GenerativeConfig, bedrock: BedrockClient | None = None):
        self.config = config
        self.bedrock = bedrock if bedrock is not None else (BedrockClient(config) if config.use_bedrock else None)
        self.playbooks = load_playbooks(config.playbook_version)
        self.taxonomy = load_taxonomy(self.playbooks["taxonomy_version"])

    def _language(self, record: dict[str, Any]) -> str:
        language = (record.get("language") or "en").lower()[:2]
        return language if language in REPLY_LANGUAGES else "en"

    def _refund_allowed(self, aspects: list[str]) -> bool:
        playbooks = self.playbooks["playbooks"]
        return any(playbooks.get(a, {}).get("refund_allowed", False) for a in aspects)

    def template_reply(self, scores: dict[str, Any], language: str) -> str:
        book = self.playbooks
        parts = [book["openers"][scores["sentiment"]][language]]
        if "safety_concern" in scores["flags"]:
            parts.append(book["safety_reply"][language])
        if scores["sentiment"] == "positive":
            # Praise gets thanks, not the problem playbooks of the aspects it mentions.
            parts.append(book["praise_reply"][language])
        else:
            known = [a for a in scores["aspects"] if a in book["playbooks"]]
            for aspect in known[: self.config.max_reply_aspects]:
                parts.append(book["playbooks"][aspect]["reply"][language])
            if not known:
                parts.append(book["fallback_reply"][language])
        parts.append(book["sign_off"][language])
        return " ".join(parts)

    def _bedrock_reply(self, masked_text: str, record: dict[str, Any], scores: dict[str, Any], language: str):
        guidance = []
        for aspect in scores["aspects"]:
            playbook = self.playbooks["playbooks"].get(aspect)
            if playbook:
                guidance.append(f"- {aspect} (owner: {self.taxonomy.owner_of(aspect)}): may offer: "
                                f"{'; '.join(playbook['actions'])}. Reference reply: {playbook['reply']['en']}")
        refund_rule = " (a refund may be mentioned only as 'an agent will review your order')" \
            if self._refund_allowed(scores["aspects"]) else ""
        system = load_prompt(self.config.prompt_version, "reply_system").substitute(
            language_name=REPLY_LANGUAGES[language], max_sentences=5, refund_rule=refund_rule)
        user = load_prompt(self.config.prompt_version, "reply_user").substitute(
            channel=record.get("channel", "unknown"), language=language, text=masked_text,
            sentiment=scores["sentiment"], intent=scores["intent"], aspects=", ".join(scores["aspects"]) or "none",
            flags=", ".join(scores["flags"]) or "none", playbook_guidance="\n".join(guidance) or "- no specific playbook")
        return self.bedrock.converse(system, user, purpose="reply")

    def draft_reply(self, record: dict[str, Any], scores: dict[str, Any] | None) -> Draft:
        normalised = normalise_scores(scores)
        language = self._language(record)
        masked = mask_pii(str(record.get("text", "")))
        owners = sorted({self.taxonomy.owner_of(a) for a in normalised["aspects"] if a in self.taxonomy.aspect_names})
        refund_allowed = self._refund_allowed(normalised["aspects"])
        fallback_reason, usage, generator = None, {}, "template"
        text = None
        if self.bedrock is None:
            fallback_reason = "bedrock disabled (generative.use_bedrock=false)"
        else:
            try:
                result = self._bedrock_reply(masked, record, normalised, language)
                usage = asdict(result.usage) | {"latency_ms": round(result.latency_ms, 1), "attempts": result.attempts}
                policy = check_reply(result.text, refund_allowed, self.config.min_reply_chars, self.config.max_reply_chars)
                if policy.ok:
                    text, generator = result.text, f"bedrock:{result.model_id}"
                else:
                    fallback_reason = "bedrock draft rejected by policy: " + "; ".join(policy.reasons)
            except BedrockUnavailable as exc:
                fallback_reason = f"bedrock unavailable: {exc}"
                LOG.warning("falling back to template reply: %s", exc)
        if text is None:
            text = self.template_reply(normalised, language)
        policy = check_reply(text, refund_allowed, self.config.min_reply_chars, self.config.max_reply_chars)
        return Draft(
            feedback_id=str(record.get("feedback_id", "")), text=text, language=language, generator=generator,
            policy=policy, approval_status=PENDING_REVIEW if policy.ok else "rejected_by_policy",
            owner_teams=owners, prompt_version=self.config.prompt_version,
            playbook_version=self.config.playbook_version, fallback_reason=fallback_reason, usage=usage,
        )
