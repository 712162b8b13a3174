"""Reply drafting reached through its entry points: Bedrock on POST /responses by configuration (the
container's environment, `fbrain --set generative.*`), and `fbrain respond draft` scoring the text first.

Bedrock is botocore's bedrock-runtime client with a Stubber: every Converse request is checked
against the service model and the expected parameters.
"""
import json
import re

import boto3
import pytest
from botocore.stub import ANY, Stubber
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import inference.serve as serve_module
from inference.config import GenerativeConfig
from inference.predictor import load_predictor
from inference.replies.drafting import ResponseService, normalise_scores
from pipelines.cli import app as fbrain

MODEL_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"
UNCERTAIN_SHIPPING = {  # sentiment margin 0.05 < second_stage_margin: the second stage is needed
    "sentiment": {"label": "negative", "probabilities": {"negative": 0.5, "neutral": 0.45, "positive": 0.05}},
    "intent": {"label": "delivery_status", "probabilities": {"delivery_status": 0.8, "complaint": 0.2}},
    "aspects": {"labels": ["shipping_delivery"], "scores": {"shipping_delivery": 0.9}}, "flags": []}
DRAFT = "We are sorry your parcel is late. We are checking with the carrier and will update you within a day."
JUDGEMENT = {"sentiment": "negative", "intent": "delivery_status", "aspects": ["shipping_delivery"], "flags": [],
             "confidence": 0.9, "rationale": "the parcel is late"}
FEEDBACK = {"feedback": {"text": "My parcel is two weeks late, where is it?"}, "scores": UNCERTAIN_SHIPPING}


def _converse(text: str) -> dict:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 50, "outputTokens": 20, "totalTokens": 70}, "metrics": {"latencyMs": 5}}


@pytest.fixture
def bedrock_runtime(monkeypatch):
    """Every bedrock-runtime client the code makes is this stubbed one; yields (stubber, regions asked for)."""
    client = boto3.client("bedrock-runtime", region_name="eu-west-1")
    stubber = Stubber(client)
    regions = []

    def make_runtime_client(config: GenerativeConfig):
        regions.append(config.region)
        return client

    monkeypatch.setattr("inference.replies.bedrock.make_runtime_client", make_runtime_client)
    with stubber:
        yield stubber, regions


@pytest.fixture
def served_app(monkeypatch):
    """The app that serve_model_dir would hand to uvicorn (nothing listens; logging left to pytest)."""
    import uvicorn

    captured = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: captured.setdefault("app", app))
    monkeypatch.setattr(serve_module, "configure_logging", lambda level: None)
    return captured


def _expect_reply_and_second_stage(stubber: Stubber) -> None:
    expected = {"modelId": MODEL_ID, "system": ANY, "messages": ANY, "inferenceConfig": ANY}
    stubber.add_response("converse", _converse(DRAFT), expected)
    stubber.add_response("converse", _converse(json.dumps(JUDGEMENT)), expected)


def _assert_bedrock_answered(body: dict) -> None:
    assert body["draft"]["generator"] == f"bedrock:{MODEL_ID}" and body["draft"]["text"] == DRAFT
    assert body["draft"]["fallback_reason"] is None and body["draft"]["usage"]["input_tokens"] == 50
    assert body["second_stage"]["status"] == "reviewed" and body["second_stage"]["second_stage"] == JUDGEMENT


def test_container_environment_turns_bedrock_on_for_post_responses(monkeypatch, tmp_path, served_app, bedrock_runtime):
    stubber, regions = bedrock_runtime
    for name, value in {"USE_BEDROCK": "true", "BEDROCK_MODEL_ID": MODEL_ID, "REGION": "eu-west-1"}.items():
        monkeypatch.setenv(f"FBRAIN__GENERATIVE__{name}", value)
    serve_module.main(["serve", "--model-dir", str(tmp_path)])  # the container's `serve`
    _expect_reply_and_second_stage(stubber)
    response = TestClient(served_app["app"]).post("/responses", json=FEEDBACK)
    assert response.status_code == 200, response.text
    _assert_bedrock_answered(response.json())
    assert regions == ["eu-west-1"]
    stubber.assert_no_pending_responses()


def test_without_configuration_the_endpoint_drafts_from_templates(tmp_path, served_app, bedrock_runtime):
    serve_module.main(["serve", "--model-dir", str(tmp_path)])
    body = TestClient(served_app["app"]).post("/responses", json=FEEDBACK).json()
    assert body["draft"]["generator"] == "template"
    assert body["second_stage"]["status"] == "skipped" and "use_bedrock=false" in body["second_stage"]["reason"]
    assert bedrock_runtime[1] == []  # no client was even made


def test_a_bad_generative_variable_names_itself(monkeypatch, tmp_path, served_app):
    monkeypatch.setenv("FBRAIN__GENERATIVE__MAX_TOKENS", "many")
    # The container's entry point exits with the message (no traceback), naming the setting.
    with pytest.raises(SystemExit, match="generative.max_tokens='many' is not valid"):
        serve_module.main(["serve", "--model-dir", str(tmp_path)])


def test_fbrain_serve_passes_the_generative_section_to_the_endpoint(tmp_path, served_app, bedrock_runtime):
    stubber, _ = bedrock_runtime
    result = CliRunner().invoke(fbrain, ["--set", "generative.use_bedrock=true", "--set", f"generative.bedrock_model_id={MODEL_ID}",
                                         "serve", "--model-dir", str(tmp_path), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    _expect_reply_and_second_stage(stubber)
    response = TestClient(served_app["app"]).post("/responses", json=FEEDBACK)
    assert response.status_code == 200, response.text
    _assert_bedrock_answered(response.json())
    stubber.assert_no_pending_responses()


TEXT = "Where is my parcel? It is two weeks late and the box will surely arrive crushed."


def _drafted(args: list[str]) -> dict:
    result = CliRunner().invoke(fbrain, ["respond", "draft", TEXT, *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _assert_draft_addresses(output: dict, prediction: dict) -> None:
    """The printed scores are the model's, and the draft is the one those scores call for."""
    assert output["scores"]["sentiment"] == prediction["sentiment"]
    assert output["scores"]["aspects"] == prediction["aspects"]
    expected = normalise_scores(prediction)
    service = ResponseService(GenerativeConfig())
    assert output["draft"]["text"] == service.template_reply(expected, "en")
    assert output["second_stage"]["first_stage"] == {k: expected[k] for k in ("sentiment", "intent", "aspects", "flags")}


def test_respond_draft_scores_the_text_with_the_given_model(tiny_model_dir):
    output = _drafted(["--model-dir", str(tiny_model_dir)])
    assert output["scores_source"] == f"model:{tiny_model_dir}"
    _assert_draft_addresses(output, load_predictor(tiny_model_dir).predict([TEXT])[0])


def test_respond_draft_scores_with_the_workspace_champion_by_default(tiny_model_dir, tmp_path, monkeypatch):
    asked = []

    def resolve_champion(workspace, group, settings=None):
        asked.append((workspace, group))
        return 7, tiny_model_dir

    monkeypatch.setattr("pipelines.local.registry.resolve_champion", resolve_champion)
    output = _drafted(["--workspace", str(tmp_path)])
    assert asked == [(tmp_path, "feedback-brain-models")]
    assert output["scores_source"] == f"model:{tiny_model_dir}"
    _assert_draft_addresses(output, load_predictor(tiny_model_dir).predict([TEXT])[0])


def _refused(args: list[str]) -> str:
    """The error message of a refused `fbrain respond draft`, unwrapped from its box."""
    result = CliRunner().invoke(fbrain, ["respond", "draft", *args])
    assert result.exit_code != 0
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_respond_draft_without_a_model_says_what_to_do(tmp_path):
    message = _refused([TEXT, "--workspace", str(tmp_path)])
    assert "no approved model" in message and "--model-dir" in message
    assert "does not exist" in _refused([TEXT, "--model-dir", str(tmp_path / "nope")])
    assert "expected a JSON object" in _refused([TEXT, "--scores", "[1, 2]"])
    assert "the text is empty" in _refused(["  ", "--scores", "{}"])


def test_respond_draft_with_given_scores_does_not_need_a_model():
    output = _drafted(["--scores", json.dumps(UNCERTAIN_SHIPPING)])
    assert output["scores_source"] == "option"
    assert output["draft"]["owner_teams"] and output["second_stage"]["status"] == "skipped"
