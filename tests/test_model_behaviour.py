"""Behavioural tests of the trained model, CheckList style (Ribeiro et al., ACL 2020).

- Invariance (INV): changing a customer's name or adding small typos must not change the
  predicted sentiment or intent.
- Directional (DIR): negating praise, or appending a strongly negative clause, must lower
  the probability of `positive`.
- Minimum functionality (MFT): two plain templates per intent are classified correctly.

They run on the session fixture `trained_model_dir` (a MiniLM trained on the demo corpus by
the local pipeline) and skip, saying so, where the suite does not provide it. As in
CheckList, each test reports its failure rate over a battery of cases and fails above a
stated bound, listing the failing cases.
"""
from __future__ import annotations

import numpy as np
import pytest

from training.predict import LoadedModel, load_model, predict_probabilities, resolve_model_dir

# Bounds are calibrated for a MiniLM fine-tuned on the 720-text demo corpus (CheckList reports
# failure rates, not absolutes). Measured 2026-11-23: a 6-epoch demo model failed typos 3/16 and
# MFT 1/18; the pipeline's champion typos 4/16, MFT 4/18, names 0; a 1-epoch model failed all five
# tests (e.g. negative clause 4/6, MFT 8/18), so the bounds still separate weak models from trained ones.
MAX_NAME_FAILURE_RATE = 0.10
"""Share of name-swap INV cases allowed to flip a prediction."""
MAX_TYPO_FAILURE_RATE = 0.25
"""Share of typo INV cases allowed to flip a prediction (misspellings change the word pieces a small model sees)."""
MAX_DIRECTIONAL_FAILURE_RATE = 0.20
"""Share of DIR cases allowed to move the positive probability the wrong way."""
MIN_INTENT_ACCURACY = 0.75
"""Share of the MFT intent templates that must be classified correctly."""

NAMES = ["Anna", "Mohammed", "Wei", "Olga", "Carlos", "Priya", "John", "Aiyana"]
NAME_TEMPLATES = [
    "{name} at the help desk was rude and never solved my problem. Not happy.",
    "I ordered the blue dress for {name} and it arrived torn. I want a refund.",
    "My sister {name} loves the jacket, great quality and fast delivery!",
    "{name} from support told me to ask here: where is my order? It has been 10 days.",
    "Please cancel the order I placed for {name}, we ordered the wrong size.",
]
TYPO_PAIRS = [
    ("The headphones stopped working after two days. Really annoyed.",
     "The headphnoes stoped working after two days. Realy annoyed."),
    ("Love it! Great quality and it arrived early.", "Love it! Graet quality and it arived early."),
    ("Where is my order? It has been two weeks.", "Where is my ordr? It has been two weks."),
    ("Please cancel my order, I ordered the wrong size.", "Please cancle my order, I orderd the wrong size."),
    ("I want my money back, the blender is broken.", "I want my mony back, the blender is brokn."),
    ("Does this backpack come in black?", "Does this backpak come in blak?"),
    ("My card was charged twice and I cannot log in to my account.",
     "My card was chraged twice and I cannot log in to my acount."),
    ("How do I send this back? I would like to exchange it for a bigger size.",
     "How do I send this bak? I would like to exchagne it for a biger size."),
]
NEGATION_PAIRS = [
    ("I love this jacket.", "I do not love this jacket."),
    ("The quality is great.", "The quality is not great at all."),
    ("Very happy with the blender.", "Not happy with the blender at all."),
    ("The shoes fit perfectly.", "The shoes do not fit, not even close."),
    ("Support was helpful and quick.", "Support was not helpful and not quick."),
    ("I would recommend this shop.", "I would never recommend this shop."),
]
NEGATIVE_CLAUSE = " But it broke after one day and support ignored me. Never ordering again."
POSITIVE_BASES = [
    "The dress looks lovely.",
    "Delivery was fast.",
    "Great headphones, the sound is clear.",
    "The kettle works well.",
    "Nice colour and good price.",
    "The packaging was neat.",
]
INTENT_TEMPLATES = {
    "complaint": ["The zipper broke on the first day, terrible quality. Not happy.",
                  "The item arrived scratched and nobody answers my emails. Really annoyed."],
    "question": ["Does this lamp come in white?", "What are your customer service hours?"],
    "praise": ["Absolutely love it, great quality. Would recommend!",
               "Fantastic service, the team was so helpful. Thank you!"],
    "refund_request": ["I want a refund for the broken blender, please refund me.",
                       "Please give me my money back for this order."],
    "return_exchange": ["How do I send this back? I want to return it.",
                        "I would like to exchange these shoes for a bigger size."],
    "cancellation": ["Please cancel my order, I ordered the wrong one by mistake.",
                     "Cancel my order please, it is taking far too long."],
    "delivery_status": ["Where is my order? It has been 10 days.",
                        "When will my package arrive? Can you tell me the expected delivery date?"],
    "account_payment": ["My payment keeps failing at checkout and I cannot log in to my account.",
                        "I was charged twice on my card for the same order."],
    "other": ["Thanks for the survey, no further comments.", "Just testing the feedback form."],
}


@pytest.fixture(scope="module")
def model(request, tmp_path_factory) -> LoadedModel:
    try:
        path = request.getfixturevalue("trained_model_dir")
    except pytest.FixtureLookupError:
        pytest.skip("needs the session fixture `trained_model_dir` (a MiniLM trained on the demo corpus "
                    "by the local pipeline); tests/conftest.py does not define it")
    return load_model(resolve_model_dir(path, tmp_path_factory.mktemp("behaviour")))


def predict(model: LoadedModel, texts: list[str]) -> dict[str, np.ndarray]:
    return predict_probabilities(model, texts, batch_size=32)


def labels_of(model: LoadedModel, probabilities: dict[str, np.ndarray], task: str) -> list[str]:
    return [model.label_maps[task][i] for i in probabilities[task].argmax(axis=1)]


def assert_failure_rate(failures: list, total: int, bound: float, what: str) -> None:
    rate = len(failures) / total
    assert rate <= bound, f"{what}: {len(failures)}/{total} cases failed ({rate:.0%} > {bound:.0%}):\n" + "\n".join(
        map(str, failures))


def test_inv_customer_names_do_not_change_sentiment_or_intent(model):
    failures = []
    for template in NAME_TEMPLATES:
        texts = [template.format(name=name) for name in NAMES]
        probabilities = predict(model, texts)
        for task in ("sentiment", "intent"):
            predicted = labels_of(model, probabilities, task)
            majority = max(set(predicted), key=predicted.count)
            failures += [(task, text, label, majority) for text, label in zip(texts, predicted) if label != majority]
    assert_failure_rate(failures, len(NAME_TEMPLATES) * len(NAMES) * 2, MAX_NAME_FAILURE_RATE, "INV names")


def test_inv_small_typos_do_not_change_sentiment_or_intent(model):
    clean = predict(model, [a for a, _ in TYPO_PAIRS])
    typos = predict(model, [b for _, b in TYPO_PAIRS])
    failures = []
    for task in ("sentiment", "intent"):
        for (a, b), before, after in zip(TYPO_PAIRS, labels_of(model, clean, task), labels_of(model, typos, task)):
            if before != after:
                failures.append((task, a, before, b, after))
    assert_failure_rate(failures, len(TYPO_PAIRS) * 2, MAX_TYPO_FAILURE_RATE, "INV typos")


def _positive_probability(model: LoadedModel, texts: list[str]) -> np.ndarray:
    column = model.label_maps["sentiment"].index("positive")
    return predict(model, texts)["sentiment"][:, column]


def test_dir_negation_lowers_positive_probability(model):
    before = _positive_probability(model, [a for a, _ in NEGATION_PAIRS])
    after = _positive_probability(model, [b for _, b in NEGATION_PAIRS])
    failures = [(a, f"{p:.3f}", b, f"{q:.3f}") for (a, b), p, q in zip(NEGATION_PAIRS, before, after) if q >= p]
    assert_failure_rate(failures, len(NEGATION_PAIRS), MAX_DIRECTIONAL_FAILURE_RATE, "DIR negation")


def test_dir_strongly_negative_clause_lowers_positive_probability(model):
    before = _positive_probability(model, POSITIVE_BASES)
    after = _positive_probability(model, [base + NEGATIVE_CLAUSE for base in POSITIVE_BASES])
    failures = [(base, f"{p:.3f}", f"{q:.3f}") for base, p, q in zip(POSITIVE_BASES, before, after) if q >= p]
    assert_failure_rate(failures, len(POSITIVE_BASES), MAX_DIRECTIONAL_FAILURE_RATE, "DIR negative clause")


def test_mft_every_intent_has_templates_and_they_are_classified(model):
    assert set(INTENT_TEMPLATES) == set(model.label_maps["intent"]), "one template set per taxonomy intent"
    texts = [text for templates in INTENT_TEMPLATES.values() for text in templates]
    expected = [intent for intent, templates in INTENT_TEMPLATES.items() for _ in templates]
    predicted = labels_of(model, predict(model, texts), "intent")
    failures = [(text, want, got) for text, want, got in zip(texts, expected, predicted) if want != got]
    assert_failure_rate(failures, len(texts), 1.0 - MIN_INTENT_ACCURACY, "MFT intents")
