"""One reply to one scored piece of feedback: the drafted reply and the second-stage judgement.

What `POST /responses` answers and `fbrain respond draft` prints, computed by this one function so
the HTTP route and the command line cannot drift apart.
"""
from __future__ import annotations

from typing import Any

from inference.replies.drafting import ResponseService
from inference.replies.second_stage import second_stage_review


def reply_to(service: ResponseService, record: dict[str, Any], scores: dict[str, Any] | None,
             order_value: float | None = None) -> dict[str, Any]:
    """{"draft", "second_stage"} for `record` ({"text", "language"?, "channel"?, "feedback_id"?}) given the
    classifier's `scores` (the endpoint's prediction; None drafts from no scores: neutral, no aspects)."""
    draft = service.draft_reply(record, scores)
    review = second_stage_review(record, scores, service.config, service.bedrock, order_value)
    return {"draft": draft.to_dict(), "second_stage": review.to_dict()}
