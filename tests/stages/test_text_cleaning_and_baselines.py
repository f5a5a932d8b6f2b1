"""Body cleaning (template headings, checkboxes, links, HTML) and the extractive baselines a model must beat."""

import csv
import itertools

import pytest

from issue_titles.metrics import best_lead_words, extractive_baselines, first_sentence, lead_words
from issue_titles.text import clean_body


@pytest.mark.parametrize(
    ("body", "cleaned"),
    [
        ("## Summary Add roundtrip support for notebooks.", "Add roundtrip support for notebooks."),
        (
            "# Which issue does this PR close? Closes #12. # Rationale for this change Faster reads.",
            "Closes #12. Faster reads.",
        ),
        ("**Description:** Fixing a bug in Unwrap", "Fixing a bug in Unwrap"),
        ("## What changed? Add metrics. ## Why? To monitor.", "Add metrics. To monitor."),
        ("### Motivation and Context This PR fixes cpplint", "This PR fixes cpplint"),
        ("## Describe your changes react-hotkeys is old", "react-hotkeys is old"),
        (
            "<!-- describe the change --> ok - [x] done [docs](https://x.y/z) ![shot](a.png) <b>bold</b>",
            "ok done docs bold",
        ),
        ("see https://github.com/a/b/pull/1 for details", "see for details"),
    ],
)
def test_clean_body_removes_templates_and_markup_keeping_the_authors_words(body, cleaned):
    assert clean_body(body) == cleaned


def test_clean_body_keeps_plain_prose_and_identifiers_unchanged():
    body = "Use `helm.v4.chart` in skip_await: fixes a race in yaml/v2 when retries is 0 (issue #12)."
    assert clean_body(body) == body


def test_clean_body_never_grows_and_handles_empty_text():
    assert clean_body("") == ""
    assert clean_body("## Summary") == ""
    assert len(clean_body("x " * 30_000)) <= 20_000


def test_first_sentence_stops_at_the_first_sentence_end_and_caps_at_12_words():
    assert first_sentence("Fix the cache. Then more text.") == "Fix the cache."
    assert first_sentence("v1.2 is out and `a.b` stays") == "v1.2 is out and `a.b` stays"
    assert first_sentence(" ".join(f"w{i}" for i in range(30))) == " ".join(f"w{i}" for i in range(12))


def test_best_lead_words_picks_the_k_that_matches_the_titles():
    bodies = [f"add {word} support to the parser because users asked for it" for word in ("json", "yaml", "toml")]
    titles = [f"add {word} support to the parser" for word in ("json", "yaml", "toml")]
    assert best_lead_words(bodies, titles) == 6
    assert lead_words(bodies[0], 6) == titles[0]


def test_the_cleaned_baselines_skip_the_template_heading_the_raw_ones_copy():
    baselines = extractive_baselines(lead_k=3)
    body = "## Summary Speed up imports. More words follow here."
    assert baselines["lead_k"](body) == "## Summary Speed"
    assert baselines["lead_k_clean"](body) == "Speed up imports."
    assert baselines["first_sentence_clean"](body) == "Speed up imports."


def test_rouge_l_scores_are_rouge_scores_own_with_porter_stemming():
    """metrics tokenises word by word and remembers each word's stemmed tokens (the lead baseline scores the same
    words thousands of times); every score must still be the one rouge-score's default stemming scorer gives."""
    from rouge_score import rouge_scorer

    from issue_titles.metrics import rouge_l_scores
    from localpach.sample import DATA_SET, open_text

    with open_text(DATA_SET) as source:
        rows = list(itertools.islice(csv.DictReader(source), 300))
    references = [row["issue_title"] for row in rows] + ["Running runs ran", "", "Ünïcödé 😀 caching", "a b"]
    references += ["KELVIN\u212a-scale", "ΑΣ ΣΑΣ naïve café", "tab\tand\u00a0no-break\u2003spaces"]
    predictions = [lead_words(row["body"], 8) for row in rows] + ["the runner running", "empty", "cached", ""]
    predictions += ["kelvink scale", "naïve\u200bcafé", "tab and no break spaces"]
    plain = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [plain.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]
    assert rouge_l_scores(predictions, references) == expected
    assert rouge_l_scores(predictions, references) == expected  # the second time from what it remembered
    assert rouge_l_scores(["run run"], ["Running runs"]) == [1.0]  # stems, not words, are compared
