"""Reply drafting, policy, second-stage scoring and summaries: local fallback and Bedrock paths."""
import json

import boto3
import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.replies.bedrock import BedrockClient
from inference.config import GenerativeConfig, ServingConfig
from inference.replies.policy import check_reply
from inference.replies.drafting import ResponseService
from inference.replies.api import create_responses_app
from inference.replies.second_stage import second_stage_review
from inference.replies.summaries import representative_indices, summarise_cluster

NEGATIVE_SHIPPING = {"sentiment": {"label": "negative", "probabilities": {"negative": 0.9, "neutral": 0.05, "positive": 0.05}},
                     "intent": {"label": "delivery_status", "probabilities": {"delivery_status": 0.8, "complaint": 0.2}},
                     "aspects": {"labels": ["shipping_delivery"], "scores": {"shipping_delivery": 0.9}}, "flags": []}


def stubbed_bedrock(texts):
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    stubber = Stubber(client)
    for text in texts:
        stubber.add_response("converse", {"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                                          "stopReason": "end_turn",
                                          "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                                          "metrics": {"latencyMs": 1}}, None)
    stubber.activate()
    sent = []
    client.meta.events.register("before-parameter-build.bedrock-runtime.Converse",
                                lambda params, **kw: sent.append(json.dumps(params)))
    return BedrockClient(GenerativeConfig(use_bedrock=True), client=client, sleep=lambda s: None), stubber, sent


@pytest.mark.parametrize("text, reason", [
    ("We will refund the full amount to your card today, sorry about that!", "refund"),
    ("You'll receive a credit of $25 on your next order, thank you for your patience.", "refund"),
    ("Here is 20% off your next order as an apology, we value you as a customer.", "amount"),
    ("Hello [NAME], we are sorry and will look into the delivery with the carrier today.", "placeholder"),
    ("Please write to jane@example.com and we will look into it with the carrier.", "personal data"),
    ("Sorry.", "too short"),
])
def test_policy_rejects_unsafe_drafts(text, reason):
    result = check_reply(text, refund_allowed=False, min_chars=20, max_chars=200)
    assert not result.ok and any(reason in r for r in result.reasons), result.reasons


def test_policy_allows_refund_talk_only_where_the_playbook_does():
    text = "We will refund the difference once an agent has reviewed your order."
    assert not check_reply(text, refund_allowed=False, min_chars=10, max_chars=500).ok
    assert check_reply(text, refund_allowed=True, min_chars=10, max_chars=500).ok


@pytest.mark.parametrize("language, word", [("en", "Hello"), ("es", "Hola"), ("fr", "Bonjour"), ("de", "Hallo"),
                                            ("ja", "Hello")])
def test_template_reply_is_in_the_customers_language_and_grounded_in_the_playbook(language, word):
    draft = ResponseService(GenerativeConfig()).draft_reply(
        {"feedback_id": "f9", "text": "Where is my parcel?", "language": language}, NEGATIVE_SHIPPING)
    assert draft.text.startswith(word) and draft.generator == "template"
    assert draft.policy.ok and draft.approval_status == "pending_human_review"
    assert draft.owner_teams == ["logistics"] and "use_bedrock=false" in draft.fallback_reason


def test_safety_flag_tells_the_customer_to_stop_using_the_product():
    draft = ResponseService(GenerativeConfig()).draft_reply(
        {"text": "The charger caught fire"},
        {"sentiment": "negative", "intent": "complaint", "aspects": ["product_quality"], "flags": ["safety_concern"]})
    assert "stop using the product" in draft.text


def test_second_stage_reviews_only_uncertain_or_severe_items_and_records_disagreement():
    config = GenerativeConfig(use_bedrock=True)
    confident = second_stage_review({"text": "late"}, NEGATIVE_SHIPPING, config, bedrock=None)
    assert confident.status == "not_needed"
    uncertain = {**NEGATIVE_SHIPPING, "intent": {"label": "complaint",
                                                 "probabilities": {"complaint": 0.45, "refund_request": 0.40}}}
    skipped = second_stage_review({"text": "meh"}, uncertain, GenerativeConfig(), bedrock=None)
    assert skipped.status == "skipped" and "uncertain intent" in skipped.reason and "disabled" in skipped.reason
    answer = json.dumps({"sentiment": "negative", "intent": "refund_request", "aspects": ["shipping_delivery"],
                         "flags": ["refund_intent"], "confidence": 0.8, "rationale": "asks for money back"})
    bedrock, stubber, sent = stubbed_bedrock([answer, "not json at all"])
    reviewed = second_stage_review({"text": "I want my money, card 4111 1111 1111 1111"}, uncertain, config, bedrock)
    assert reviewed.status == "reviewed" and reviewed.disagreements == ["intent"] and reviewed.needs_human_review
    assert "4111" not in sent[0]
    invalid = second_stage_review({"text": "meh"}, uncertain, config, bedrock)
    assert invalid.status == "invalid_answer" and invalid.needs_human_review
    high_value = second_stage_review({"text": "late"}, NEGATIVE_SHIPPING, GenerativeConfig(), None, order_value=900)
    assert "high value" in high_value.reason


def test_representatives_are_central_and_not_repeated():
    import numpy as np

    vectors = np.array([[1, 0], [1, 0.01], [0.7, 0.7], [0.8, 0.6], [0, 1]], dtype=float)
    # [0.8, 0.6] is closest to the centroid; [0.7, 0.7] is a near-copy of it, so the next quote is [1, 0.01]
    assert representative_indices(vectors, 2) == [3, 1]


def test_extractive_summary_masks_pii_and_names_the_owner():
    items = [{"text": text + " Contact me at a@x.com"} for text in (
        "My parcel arrived two weeks late and tracking never updated.",
        "Delivery was late again, the courier missed the promised date.",
        "Order still not delivered, it is a week late and nobody answers.",
        "Late parcel, tracking stuck for days.",
        "Delivery late by ten days, very annoying.")]
    items.append({"text": "Love the colour"})
    summary = summarise_cluster(items, "shipping_delivery", GenerativeConfig())
    assert summary.generator == "extractive" and summary.owner_team == "logistics" and summary.count == 6
    assert "Love the colour" not in summary.quotes  # the outlier is the least central item
    assert len(summary.quotes) == 3 and all("@x.com" not in q for q in summary.quotes)
    assert "late" in summary.summary


def test_api_validates_input_and_drafts():
    client = TestClient(create_responses_app(GenerativeConfig()))
    ok = client.post("/responses", json={"feedback": {"text": "Where is my order?", "language": "es"},
                                         "scores": NEGATIVE_SHIPPING})
    assert ok.status_code == 200 and ok.json()["draft"]["text"].startswith("Hola")
    assert client.post("/responses", json={"feedback": {"text": "  "}}).status_code == 400
    assert client.post("/responses", json={"nope": 1}).status_code == 422
    assert client.post("/summaries", json={"aspect": "weather", "items": [{"text": "x"}]}).status_code == 400
    assert client.post("/summaries", json={"aspect": "packaging", "items": []}).status_code == 400
    few = TestClient(create_responses_app(GenerativeConfig(), serving=ServingConfig(max_summary_items=2)))
    too_many = few.post("/summaries", json={"aspect": "packaging", "items": [{"text": "Box was crushed."}] * 3})
    assert too_many.status_code == 400 and "1 to 2 items, got 3" in too_many.json()["detail"]
    assert few.post("/summaries", json={"aspect": "packaging", "items": [{"text": "Box was crushed."}] * 2}).status_code == 200


def test_text_limit_is_the_serving_configs_and_reachable_from_the_cli():
    """/responses and /summaries refuse texts above ServingConfig.max_text_chars with 413, whether standalone or
    mounted on the endpoint, and the limit moves with `--set serving.max_text_chars` / FBRAIN__SERVING__*."""
    from inference.app import create_app
    from inference.config import ServingConfig
    from inference.serve import config_from_env
    from pipelines.config import load_config

    default = ServingConfig().max_text_chars
    standalone = TestClient(create_responses_app(GenerativeConfig()))
    refused = standalone.post("/responses",
                              json={"feedback": {"text": "x" * (default + 1)}, "scores": NEGATIVE_SHIPPING})
    assert refused.status_code == 413 and f"the limit is {default}" in refused.json()["detail"]

    limit = 50
    serving = load_config(overrides=[f"serving.max_text_chars={limit}"]).serving  # what `fbrain --set ...` builds
    assert config_from_env(environ={"FBRAIN__SERVING__MAX_TEXT_CHARS": str(limit)}).max_text_chars == limit
    at_limit, over = {"text": "x" * limit}, {"text": "x" * (limit + 1)}
    for client in (TestClient(create_responses_app(GenerativeConfig(), serving=serving)),
                   # Mounted on the endpoint (no model needed: the length check comes before scoring).
                   TestClient(create_app(config=serving, loader=lambda: None))):
        assert client.post("/responses", json={"feedback": at_limit, "scores": NEGATIVE_SHIPPING}).status_code == 200
        assert client.post("/responses", json={"feedback": over, "scores": NEGATIVE_SHIPPING}).status_code == 413
        summary = client.post("/summaries", json={"aspect": "packaging", "items": [at_limit, over]})
        assert summary.status_code == 413 and "items[1]" in summary.json()["detail"]


EMAILS = st.from_regex(r"[a-z]{3,8}\.[a-z]{2,6}@(example|mail|shop)\.(com|org|de)", fullmatch=True)
PHONES = st.from_regex(r"\+1 [2-9]\d{2} [2-9]\d{2} \d{4}", fullmatch=True)
CARDS = st.sampled_from(["4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881"])
WORDS = st.lists(st.sampled_from(["my", "parcel", "is", "late", "and", "the", "box", "broke", "please", "help"]),
                 min_size=2, max_size=8).map(" ".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=WORDS, email=EMAILS, phone=PHONES, card=CARDS, after=WORDS)
def test_no_pii_reaches_bedrock_or_the_reply(before, email, phone, card, after):
    draft_text = "We're sorry about the delay and are checking with the carrier now, we will update you soon."
    bedrock, stubber, sent = stubbed_bedrock([draft_text])
    client = TestClient(create_responses_app(GenerativeConfig(use_bedrock=True), bedrock=bedrock))
    text = f"{before} {email} {after}, call {phone}, paid with {card}"
    response = client.post("/responses", json={"feedback": {"text": text}, "scores": NEGATIVE_SHIPPING})
    assert response.status_code == 200
    body = json.dumps(response.json())
    for secret in (email, phone, card):
        assert secret not in sent[0] and secret not in body


def test_endpoint_scores_then_drafts_in_one_call(tiny_model_dir):
    import time

    from inference.app import create_app

    with TestClient(create_app(tiny_model_dir)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ping").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        response = client.post("/responses", json={"feedback": {"text": "Where is my parcel? jane@x.org"}})
        assert response.status_code == 200
        body = response.json()
        assert body["scores_source"] == "endpoint" and body["draft"]["approval_status"] == "pending_human_review"
        assert "jane@x.org" not in response.text


def test_endpoint_flag_map_and_aspect_ranking_drive_the_template():
    scores = {"sentiment": {"label": "negative"}, "intent": {"label": "complaint"},
              "aspects": {"labels": ["product_quality", "packaging", "pricing_value"],
                          "scores": {"product_quality": 0.6, "packaging": 0.9, "pricing_value": 0.55}},
              "flags": {"urgency": False, "safety_concern": False, "refund_intent": True, "profanity": False}}
    draft = ResponseService(GenerativeConfig()).draft_reply({"text": "box crushed, mug chipped"}, scores)
    assert "stop using the product" not in draft.text  # safety_concern is False in the map
    assert draft.text.index("arrived in poor condition") < draft.text.index("did not hold up")
    assert "pricing" not in draft.text  # only the two most likely aspects are addressed


def test_praise_is_thanked_not_answered_with_problem_playbooks():
    draft = ResponseService(GenerativeConfig()).draft_reply(
        {"text": "Love them, true to size"},
        {"sentiment": "positive", "intent": "praise", "aspects": ["sizing_fit", "product_quality"]})
    assert "delighted" in draft.text and "did not hold up" not in draft.text
