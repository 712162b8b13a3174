"""Bedrock Converse calls checked against botocore's real service model with a Stubber."""
import boto3
import pytest
from botocore.stub import Stubber

from inference.replies.bedrock import BedrockClient, BedrockUnavailable
from inference.config import GenerativeConfig
from inference.replies.drafting import ResponseService


def converse_response(text: str, tokens_in: int = 120, tokens_out: int = 40) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": tokens_in, "outputTokens": tokens_out, "totalTokens": tokens_in + tokens_out},
        "metrics": {"latencyMs": 321},
    }


@pytest.fixture
def runtime():
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def make_client(client, **overrides) -> BedrockClient:
    config = GenerativeConfig(use_bedrock=True, **overrides)
    return BedrockClient(config, client=client, sleep=lambda seconds: None)


def test_exact_converse_request_with_guardrail_usage_and_cost(runtime):
    client, stubber = runtime
    bedrock = make_client(client, guardrail_id="gr-123", guardrail_version="2")
    expected = {
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "system": [{"text": "be kind"}],
        "messages": [{"role": "user", "content": [{"text": "hello"}]}],
        "inferenceConfig": {"maxTokens": 400, "temperature": 0.2, "topP": 0.9},
        "guardrailConfig": {"guardrailIdentifier": "gr-123", "guardrailVersion": "2"},
    }
    stubber.add_response("converse", converse_response("Hi there", 1000, 1000), expected)
    result = bedrock.converse("be kind", "hello")
    assert result.text == "Hi there" and result.attempts == 1
    assert result.usage.input_tokens == 1000 and result.usage.cost_usd == pytest.approx(0.00025 + 0.00125)
    assert bedrock.ledger.calls == 1 and bedrock.ledger.cost_usd == pytest.approx(0.0015)


def test_throttling_is_retried_then_succeeds(runtime):
    client, stubber = runtime
    bedrock = make_client(client)
    for _ in range(2):
        stubber.add_client_error("converse", "ThrottlingException", "Too many requests", 429, expected_params=None)
    stubber.add_response("converse", converse_response("done"), None)
    assert bedrock.converse("s", "u").attempts == 3


def test_persistent_throttling_and_non_retryable_errors_raise(runtime):
    client, stubber = runtime
    bedrock = make_client(client, max_attempts=2)
    for _ in range(2):
        stubber.add_client_error("converse", "ThrottlingException", "slow down", 429, expected_params=None)
    with pytest.raises(BedrockUnavailable) as info:
        bedrock.converse("s", "u")
    assert info.value.error_code == "ThrottlingException" and info.value.attempts == 2
    stubber.add_client_error("converse", "AccessDeniedException", "no model access", 403, expected_params=None)
    with pytest.raises(BedrockUnavailable) as info:
        bedrock.converse("s", "u")
    assert info.value.attempts == 1  # retrying a permissions error would only waste time


def test_reply_sends_masked_text_only_and_records_usage(runtime):
    client, stubber = runtime
    service = ResponseService(GenerativeConfig(use_bedrock=True), bedrock=make_client(client))
    sent = {}
    client.meta.events.register("before-parameter-build.bedrock-runtime.Converse", lambda params, **kw: sent.update(params))
    stubber.add_response("converse", converse_response(
        "We're sorry your parcel is late. We're checking with the carrier and will update you shortly."), None)
    record = {"feedback_id": "f1", "text": "Parcel late! Email me at jane.doe@example.com or call +1 415 555 0134.",
              "channel": "email"}
    draft = service.draft_reply(record, {"sentiment": "negative", "intent": "delivery_status",
                                         "aspects": ["shipping_delivery"]})
    prompt = sent["messages"][0]["content"][0]["text"]
    assert "jane.doe@example.com" not in prompt and "555 0134" not in prompt
    assert "[EMAIL]" in prompt and "[PHONE]" in prompt
    assert draft.generator.startswith("bedrock:") and draft.policy.ok
    assert draft.approval_status == "pending_human_review" and draft.usage["input_tokens"] == 120
    assert draft.owner_teams == ["logistics"]


def test_failing_bedrock_falls_back_to_template(runtime):
    client, stubber = runtime
    service = ResponseService(GenerativeConfig(use_bedrock=True), bedrock=make_client(client, max_attempts=1))
    stubber.add_client_error("converse", "ServiceUnavailableException", "down", 503, expected_params=None)
    draft = service.draft_reply({"text": "The box was crushed", "language": "fr"},
                                {"sentiment": "negative", "intent": "complaint", "aspects": ["packaging"]})
    assert draft.generator == "template" and "ServiceUnavailableException" in draft.fallback_reason
    assert "Bonjour" in draft.text and draft.policy.ok


def test_bedrock_draft_promising_a_refund_is_rejected_and_replaced(runtime):
    client, stubber = runtime
    service = ResponseService(GenerativeConfig(use_bedrock=True), bedrock=make_client(client))
    stubber.add_response("converse", converse_response(
        "So sorry! We will refund you $50 right away and send a new one for free."), None)
    draft = service.draft_reply({"text": "Arrived broken"},
                                {"sentiment": "negative", "intent": "complaint", "aspects": ["product_quality"]})
    assert draft.generator == "template"
    assert "refund" in draft.fallback_reason and "policy" in draft.fallback_reason
