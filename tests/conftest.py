"""Test-wide settings: offline, no telemetry, no AWS account, and a shared tiny model."""
import os

from pipelines.local.settings import OFFLINE_ENV

# Fake credentials: moto and Stubber need some, and no test may reach a real account.
for _key, _value in {**OFFLINE_ENV, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("AWS_ENDPOINT_URL", None)
# Jobs called in-process (not through the runner) keep their local secrets in a scratch workspace, not the checkout.
import tempfile  # noqa: E402

os.environ.setdefault("FBRAIN_WORKSPACE", tempfile.mkdtemp(prefix="fbrain-test-workspace-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "external"


# ---------------------------------------------------------------- markers: `make test-fast`
# `make test-fast` runs `-m "not slow"`; `make test` runs everything. A test is slow when it
# is marked @pytest.mark.slow, uses the shared end-to-end run (a whole local pipeline), or
# is listed here from `--durations=0` on this 2-core machine (most take 5-20 s: training
# runs, subprocesses that import torch, MLflow stores, moto-backed feature groups).
SLOW_FIXTURES = {"local_run", "trained_model_dir"}
SLOW_MODULES = {
    "test_end_to_end",  # local_run
    "test_local_runner",  # local_run
    "test_model_behaviour",  # trained_model_dir, requested at run time
    "test_train",  # tiny training runs, 5-19 s each
    "test_monitoring",  # baseline fixture 15 s, drift scenarios 3-6 s each
}
SLOW_TESTS = {
    "test_train_tracking.py::test_tracker_logs_to_mlflow_when_a_tracking_uri_is_set",
    "test_train_tracking.py::test_local_store_artifacts_stay_beside_the_database",
    "test_responses.py::test_no_pii_reaches_bedrock_or_the_reply",
    "test_pipeline_definition.py::test_another_process_builds_the_same_bytes",
    "test_serving_predictor.py::test_onnx_path_never_imports_torch",
    "test_feature_store.py::test_create_feature_group_request_is_accepted_by_moto",
    "test_evaluate.py::test_evaluation_report_layout_per_source_baseline_and_quarantine",
    "test_dependencies.py::test_each_image_runs_with_only_its_role_installed",
    "test_dependencies.py::test_a_role_without_torch_cannot_import_it",
    "test_cli_registry_deploy.py::test_model_approve_locally_moves_the_champion_alias",
    "test_cli_registry_deploy.py::test_local_monitoring_follows_the_local_champion",
    "test_monitoring_pipeline.py::test_rules_apply_schedules_the_monitoring_pipeline_and_wires_retraining",
    # 2.5-4.5 s each; left out so that the fast subset stays under 2 minutes here.
    "test_operations_worker.py::test_a_kill_after_any_write_loses_nothing_and_counts_nothing_twice",
    "test_metrics.py::test_epoch_selection_scores_validation_exactly_as_the_gate_scores_the_test_split",
    "test_metrics.py::test_the_stored_threshold_moves_validation_evaluation_export_parity_serving_and_monitoring",
    "test_cli_registry_deploy.py::test_deploy_aws_creates_the_endpoint_from_the_newest_approved_package",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        test_id = f"{item.path.name}::{item.originalname}"
        if module in SLOW_MODULES or test_id in SLOW_TESTS or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data/external, or a visible skip where this checkout has none beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the external data sets in {SHARED_DATA} (absent on this machine)")
    return SHARED_DATA


# ---------------------------------------------------------------- tiny model + examples
# Shared by training, evaluation, serving and monitoring tests: a 2-layer BERT (hidden 32)
# with the packaged MiniLM tokenizer, saved in the contract's model-directory layout, and a
# hand-written, partially labeled example set that covers every taxonomy label.
import json  # noqa: E402

# (text, sentiment, aspects) per intent; position j in each list decides split and labels:
# j=0..3 -> train, j=4 -> validation, j=5 -> test (validation/test rows cover every label).
TINY_TEXTS = {
    "complaint": [
        ("The stitching on the jacket came apart after two washes.", "negative", ["product_quality"]),
        ("Box arrived crushed and the mug inside was chipped.", "negative", ["packaging", "product_quality"]),
        ("The colour is nothing like the photos on the website.", "negative", ["listing_accuracy"]),
        ("Customer service hung up on me twice.", "negative", ["customer_support"]),
        ("The sneakers are a full size too small and the sole is already peeling.", "negative", ["sizing_fit", "product_quality"]),
        ("Way overpriced for such flimsy plastic.", "negative", ["pricing_value", "product_quality"]),
    ],
    "question": [
        ("Does this blender come with a spare blade?", "neutral", []),
        ("Is the medium closer to a US 8 or a US 10?", "neutral", ["sizing_fit"]),
        ("How long does shipping to Canada usually take?", "neutral", ["shipping_delivery"]),
        ("Is the listed price including tax?", "neutral", ["pricing_value"]),
        ("Can you tell me if the box is recyclable?", "neutral", ["packaging"]),
        ("Does the description mean the strap is real leather?", "neutral", ["listing_accuracy"]),
    ],
    "praise": [
        ("Absolutely love this lamp, great build quality.", "positive", ["product_quality"]),
        ("Fits perfectly, true to size.", "positive", ["sizing_fit"]),
        ("Arrived a day early and beautifully packed.", "positive", ["shipping_delivery", "packaging"]),
        ("The support agent solved my issue in minutes, thank you!", "positive", ["customer_support"]),
        ("Excellent value for money, exactly as described.", "positive", ["pricing_value", "listing_accuracy"]),
        ("Super fast delivery and the quality is amazing.", "positive", ["shipping_delivery", "product_quality"]),
    ],
    "refund_request": [
        ("The kettle stopped working, I want a full refund.", "negative", ["product_quality"]),
        ("I was charged more than the listed price, please refund the difference.", "negative", ["pricing_value"]),
        ("Package never arrived, refund me please.", "negative", ["shipping_delivery"]),
        ("Item was not as described, I need my money back.", "negative", ["listing_accuracy"]),
        ("Refund me, the parcel came soaking wet and the contents were ruined.", "negative", ["packaging"]),
        ("Please refund my order, your support team ignored me for weeks.", "negative", ["customer_support"]),
    ],
    "return_exchange": [
        ("Can I exchange these jeans for a larger size?", "neutral", ["sizing_fit"]),
        ("The shirt is too tight across the shoulders, how do I return it?", "negative", ["sizing_fit"]),
        ("I'd like to swap the blue one for the red one.", "neutral", []),
        ("Received the wrong model, I want to exchange it for the one I ordered.", "negative", ["listing_accuracy"]),
        ("The boots run large, I'd like to return them for a smaller pair.", "neutral", ["sizing_fit"]),
        ("How do I return shoes that are too narrow and came in a damaged box?", "neutral", ["sizing_fit", "packaging"]),
    ],
    "cancellation": [
        ("Please cancel my order, I found it cheaper elsewhere.", "neutral", ["pricing_value"]),
        ("Cancel my subscription immediately.", "negative", []),
        ("I want to cancel, delivery is taking far too long.", "negative", ["shipping_delivery"]),
        ("Cancel the order please, I ordered the wrong size.", "neutral", ["sizing_fit"]),
        ("Cancel it, the shipping fee is ridiculous.", "negative", ["pricing_value", "shipping_delivery"]),
        ("Please cancel my order before it ships, the support chat was useless.", "negative", ["customer_support"]),
    ],
    "delivery_status": [
        ("Where is my order? It has been ten days.", "negative", ["shipping_delivery"]),
        ("Tracking hasn't updated since Monday.", "negative", ["shipping_delivery"]),
        ("When will my parcel be delivered?", "neutral", ["shipping_delivery"]),
        ("The courier says delivered but nothing is here.", "negative", ["shipping_delivery"]),
        ("Any update on my shipment? Support has not replied.", "negative", ["shipping_delivery", "customer_support"]),
        ("Is my package still on its way?", "neutral", ["shipping_delivery"]),
    ],
    "account_payment": [
        ("My card was charged twice for one order.", "negative", []),
        ("I can't log in to my account after the update.", "negative", []),
        ("How do I change the payment method on my account?", "neutral", []),
        ("The promo code did not apply at checkout.", "negative", ["pricing_value"]),
        ("Payment failed but the money left my account, and nobody in support can explain.", "negative", ["customer_support"]),
        ("Why was I charged a higher price than the one shown at checkout?", "negative", ["pricing_value", "listing_accuracy"]),
    ],
    "other": [
        ("Just wanted to say hi to the team.", "positive", []),
        ("Do you have a physical store in Berlin?", "neutral", []),
        ("I am writing a blog post about sustainable shopping.", "neutral", []),
        ("Happy holidays everyone!", "positive", []),
        ("Are you hiring warehouse staff?", "neutral", []),
        ("Nice website design.", "positive", []),
    ],
}
# Aspect-only rows (an aspect data set: no sentiment or intent labels), all in train.
TINY_ASPECT_ONLY_TEXTS = [
    ("Battery life is poor and the charger feels cheap.", ["product_quality"]),
    ("The trousers are long in the leg.", ["sizing_fit"]),
    ("Came in a huge box with no padding.", ["packaging"]),
    ("Listing said cotton but the label says polyester.", ["listing_accuracy"]),
    ("Great price for what you get.", ["pricing_value"]),
    ("The helpdesk answered quickly.", ["customer_support"]),
]
# Position j in a TINY_TEXTS list -> (split, source, channel, labeled tasks).
_TINY_POSITION_PLAN = [
    ("train", "survey", "survey", ["sentiment", "intent", "aspects"]),
    ("train", "reviews", "review", ["sentiment", "aspects"]),
    ("train", "survey", "survey", ["sentiment", "intent", "aspects"]),
    ("train", "support", "support_ticket", ["sentiment", "intent"]),
    ("validation", "survey", "survey", ["sentiment", "intent", "aspects"]),
    ("test", "survey", "survey", ["sentiment", "intent", "aspects"]),
]
_STARS = {"negative": 1, "neutral": 3, "positive": 5}


def tiny_example_rows() -> dict[str, list[dict]]:
    """Rows of EXAMPLE_COLUMNS per split (60: 42 train, 9 validation, 9 test)."""
    splits: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for intent, items in TINY_TEXTS.items():
        for position, (text, sentiment, aspects) in enumerate(items):
            split, source, channel, tasks = _TINY_POSITION_PLAN[position]
            splits[split].append({
                "feedback_id": f"tiny-{intent}-{position}", "text": text, "source": source,
                "channel": channel, "language": "en",
                "star_rating": _STARS[sentiment] if channel == "review" else None,
                "created_at": "2026-11-01T10:00:00+00:00",
                "sentiment": sentiment if "sentiment" in tasks else None,
                "intent": intent if "intent" in tasks else None,
                "aspects": aspects if "aspects" in tasks else None,
                "labeled_tasks": tasks,
            })
    for number, (text, aspects) in enumerate(TINY_ASPECT_ONLY_TEXTS):
        splits["train"].append({
            "feedback_id": f"tiny-aspects-{number}", "text": text, "source": "aspect_reviews",
            "channel": "review", "language": "en", "star_rating": None,
            "created_at": "2026-11-02T10:00:00+00:00", "sentiment": None, "intent": None,
            "aspects": aspects, "labeled_tasks": ["aspects"],
        })
    return splits


def write_tiny_examples(root: Path) -> Path:
    """`root/<split>/examples.jsonl` for train, validation and test; returns root."""
    for split, rows in tiny_example_rows().items():
        (root / split).mkdir(parents=True, exist_ok=True)
        with open(root / split / "examples.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return root


TINY_BERT_SHAPE = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64)


def build_tiny_model(seed: int = 0):
    """A randomly initialised MultiTaskClassifier on a 2-layer BERT (hidden 32) + MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig

    from training.backbone import packaged_tokenizer_path
    from training.model import MultiTaskClassifier

    tokenizer = AutoTokenizer.from_pretrained(packaged_tokenizer_path())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), **TINY_BERT_SHAPE)
    return MultiTaskClassifier.from_encoder_config(config, tokenizer, backbone="tiny-bert", max_seq_length=64).eval()


@pytest.fixture(scope="session")
def tiny_examples_dir(tmp_path_factory) -> Path:
    """Folder with train/, validation/, test/ examples.jsonl (60 partially labeled rows)."""
    return write_tiny_examples(tmp_path_factory.mktemp("tiny_examples"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny untrained model in the contract layout: HF files, fbrain_model.json, onnx/ (fp32, int8, parity)."""
    from training.export import export_model

    model = build_tiny_model()
    directory = tmp_path_factory.mktemp("tiny_model") / "model"
    model.metrics = {"note": "untrained tiny test model"}
    model.save_pretrained(directory)
    export_model(model, directory)
    return directory


# ---------------------------------------------------------------- the shared end-to-end run
@pytest.fixture(scope="session")
def local_run(tmp_path_factory):
    """One real `fbrain pipeline run --local` on the demo corpus (packaged MiniLM), shared by the suite."""
    from e2e_support import run_pipeline_locally

    return run_pipeline_locally(tmp_path_factory.mktemp("e2e_workspace"))


@pytest.fixture(scope="session")
def trained_model_dir(local_run) -> Path:
    """The champion model that the end-to-end run trained and registered."""
    from pipelines.local.registry import resolve_champion

    if local_run.returncode != 0:
        pytest.fail(f"the end-to-end pipeline run failed:\n{local_run.output[-3000:]}")
    return resolve_champion(local_run.workspace, "feedback-brain-models")[1]
