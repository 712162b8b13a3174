"""Cluster summaries for the owning team: representative quotes, then Bedrock or extractive text.

Representatives are chosen by embedding centrality (closest to the cluster centroid, skipping
near-copies of quotes already chosen), so the quotes show the typical complaint rather than
the loudest one. Embeddings come from the model's ONNX `embedding` output when a model is
given, else from TF-IDF vectors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from inference.replies.bedrock import BedrockClient, BedrockUnavailable
from inference.config import GenerativeConfig
from inference.replies.policy import mask_pii
from inference.replies.drafting import load_prompt
from processing.taxonomy import load_taxonomy

Embedder = Callable[[Sequence[str]], np.ndarray]
NEAR_COPY_SIMILARITY = 0.95
"""Cosine similarity above which a candidate quote counts as a repeat of one already chosen."""


def tfidf_embedder(texts: Sequence[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts).toarray()


def representative_indices(embeddings: np.ndarray, k: int) -> list[int]:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms == 0, 1, norms)
    centroid = unit.mean(axis=0)
    centrality = unit @ (centroid / (np.linalg.norm(centroid) or 1))
    chosen: list[int] = []
    for index in np.argsort(-centrality, kind="stable"):
        if all(float(unit[index] @ unit[other]) < NEAR_COPY_SIMILARITY for other in chosen):
            chosen.append(int(index))
        if len(chosen) == k:
            break
    return chosen


@dataclass
class ClusterSummary:
    aspect: str
    owner_team: str
    count: int
    summary: str
    quotes: list[str]
    generator: str
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_cluster(items: Sequence[dict[str, Any]], aspect: str, config: GenerativeConfig,
                      bedrock: BedrockClient | None = None, embedder: Embedder | None = None) -> ClusterSummary:
    if not items:
        raise ValueError("a cluster summary needs at least one feedback item")
    owner = load_taxonomy().owner_of(aspect)
    texts = [mask_pii(str(item.get("text", ""))) for item in items]
    chosen = representative_indices((embedder or tfidf_embedder)(texts), config.summary_quotes)
    quotes = [texts[i] for i in chosen]
    fallback_reason = "bedrock disabled (generative.use_bedrock=false)" if bedrock is None else None
    if bedrock is not None:
        system = load_prompt(config.prompt_version, "summary_system").substitute()
        user = load_prompt(config.prompt_version, "summary_user").substitute(
            owner_team=owner, aspect=aspect, count=len(items), quotes="\n".join(f'- "{q}"' for q in quotes))
        try:
            result = bedrock.converse(system, user, purpose="summary")
            return ClusterSummary(aspect, owner, len(items), mask_pii(result.text), quotes,
                                  f"bedrock:{result.model_id}")
        except BedrockUnavailable as exc:
            fallback_reason = f"bedrock unavailable: {exc}"
    lead = f"{len(items)} feedback item{'s' if len(items) != 1 else ''} about {aspect.replace('_', ' ')} for {owner}."
    typical = " Most typical: " + " | ".join(f'"{_first_sentence(q)}"' for q in quotes)
    return ClusterSummary(aspect, owner, len(items), lead + typical, quotes, "extractive", fallback_reason)


def _first_sentence(text: str, limit: int = 160) -> str:
    for end in (". ", "! ", "? "):
        if end in text:
            text = text.split(end, 1)[0] + end.strip()
            break
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
