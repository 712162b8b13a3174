"""Text normalisation, spam rules and offline language detection."""
import pytest

from processing.cleaning import clean_text, strip_html
from processing.config import ProcessingConfig
from processing.language import LanguageDetector
from processing.spam import SpamFilter


def test_html_script_and_style_are_removed_entities_decoded():
    raw = ("<div>Great <b>fit</b>&amp;colour</div><script type='x'>alert('hi')</script>"
           "<STYLE>.a{}</STYLE><!-- tracking --> &lt;script&gt;evil()&lt;/script&gt; done")
    assert clean_text(raw) == "Great fit &colour done"
    assert strip_html("no tags, 3 < 5 and 6 > 2") == "no tags, 3 < 5 and 6 > 2"
    assert clean_text("<script>unterminated") == ""


def test_unicode_nfkc_invisible_characters_and_whitespace():
    assert clean_text("ｆｕｌｌ\u00a0width\u200b ﬁne\t\n\n  caf\u0065\u0301") == "full width fine café"
    assert clean_text("  \x00a\x07b  ") == "ab"


@pytest.mark.parametrize("text, rule", [
    ("Click here to earn $500 a day working from home", "promo_pattern"),
    ("see [URL] and [URL] and [URL]", "too_many_links"),
    ("soooooooooooo goooood", "repeated_characters"),
    ("!!! ??? *** ### $$$ @@@ %%% real words here though mostly", "non_word_ratio"),
    ("xkcdv bzzrt qwrtp sdfgh jklmn zxcvb", "low_vowel_ratio"),
    ("The dress runs small, order a size up. Sooo pretty!!!", None),
    ("Excellent!!!!!!!!!!", None),
    ("Très belle robe, je recommande vivement à tout le monde", None),
])
def test_spam_rules_name_the_rule_that_fired(text, rule):
    assert SpamFilter().reason(text) == rule


def test_spam_thresholds_come_from_config():
    lenient = SpamFilter(ProcessingConfig(spam_max_repeated_chars=20))
    assert lenient.reason("soooooooooooo goooood") is None


def test_language_detection_offline_and_reproducible():
    detector = LanguageDetector()
    assert detector.detect("The jacket is warm and the zip works well") == "en"
    assert detector.detect("La chaqueta es muy bonita pero la talla es pequeña") == "es"
    assert detector.detect("Die Jacke ist sehr schön, aber leider viel zu klein") == "de"
    assert detector.detect("ok 👍") is None  # too short to tell
    assert detector.detect("[EMAIL] [PHONE]") is None
    texts = ["Vestido precioso, me queda perfecto", "Ottimo prodotto, spedizione veloce e imballaggio curato"]
    assert [detector.detect(t) for t in texts] == [LanguageDetector().detect(t) for t in texts]
