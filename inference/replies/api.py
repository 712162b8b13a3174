"""HTTP API for generative work: POST /responses (draft a reply), POST /summaries.

Mounted on the endpoint's app (so a reply can be scored and drafted in one call) and usable
as a standalone app. Scores may be passed in; otherwise the app's scorer (the endpoint's
predictor, when mounted there) scores the text first.

The longest text accepted is `ServingConfig.max_text_chars`, the endpoint's own limit: the text
drafted for is the text the endpoint scores, so one setting (`--set serving.max_text_chars=N`,
or `FBRAIN__SERVING__MAX_TEXT_CHARS` in the container) bounds both. These routes answer 413 above
it (as they always did), /invocations 400.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from inference.replies.bedrock import BedrockClient
from inference.config import GenerativeConfig, ServingConfig
from inference.replies.drafting import ResponseService
from inference.replies.reply import reply_to
from inference.replies.summaries import summarise_cluster
from processing.taxonomy import load_taxonomy


class FeedbackIn(BaseModel):
    text: str = Field(description="The customer's words.")
    feedback_id: str = ""
    channel: str = "unknown"
    language: Optional[str] = None


class ResponseRequest(BaseModel):
    feedback: FeedbackIn
    scores: Optional[dict[str, Any]] = Field(default=None, description="The endpoint's prediction for the text.")
    order_value: Optional[float] = Field(default=None, ge=0)


class SummaryRequest(BaseModel):
    aspect: str
    items: list[FeedbackIn]


def _check_text(text: str, where: str, max_text_chars: int) -> None:
    if not text.strip():
        raise HTTPException(400, f"{where}: text is empty")
    if len(text) > max_text_chars:
        raise HTTPException(413, f"{where}: text has {len(text)} characters, the limit is {max_text_chars}")


def build_router(config: GenerativeConfig, bedrock: BedrockClient | None = None,
                 scorer: Callable[[list[str]], list[dict]] | None = None,
                 serving: ServingConfig | None = None) -> APIRouter:
    """The /responses and /summaries routes; `serving` (the endpoint's configuration, defaults when None)
    gives the text length limit."""
    router = APIRouter()
    service = ResponseService(config, bedrock=bedrock)
    serving = serving or ServingConfig()
    max_text_chars, max_items = serving.max_text_chars, serving.max_summary_items

    @router.post("/responses")
    def draft_response(body: ResponseRequest, request: Request) -> dict[str, Any]:
        _check_text(body.feedback.text, "feedback", max_text_chars)
        scores = body.scores
        score = scorer or getattr(request.app.state, "score_texts", None)
        if scores is None and score is not None:
            scores = score([body.feedback.text])[0]
        return reply_to(service, body.feedback.model_dump(), scores, body.order_value) | {"scores_source":
                "request" if body.scores is not None else ("endpoint" if scores is not None else "none")}

    @router.post("/summaries")
    def summarise(body: SummaryRequest) -> dict[str, Any]:
        if body.aspect not in load_taxonomy().aspect_names:
            raise HTTPException(400, f"unknown aspect {body.aspect!r}; known: {list(load_taxonomy().aspect_names)}")
        if not body.items or len(body.items) > max_items:
            raise HTTPException(400, f"a summary needs 1 to {max_items} items, got {len(body.items)}")
        for index, item in enumerate(body.items):
            _check_text(item.text, f"items[{index}]", max_text_chars)
        return summarise_cluster([i.model_dump() for i in body.items], body.aspect, config, service.bedrock).to_dict()

    return router


def create_responses_app(config: GenerativeConfig | None = None, bedrock: BedrockClient | None = None,
                         serving: ServingConfig | None = None) -> FastAPI:
    app = FastAPI(title="feedback-brain responses")
    app.include_router(build_router(config or GenerativeConfig(), bedrock, serving=serving))
    return app
