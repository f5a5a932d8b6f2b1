"""MODEL_CARD.md: written by `stages build` into every bundle, from the metrics it measured and its provenance."""

import json

from issue_titles.model_card import render_model_card
from issue_titles.provenance import verify_bundle

METRICS = {
    "rouge_l": 0.3121,
    "model": {"rouge_l": 0.3121, "bleu": 8.1, "mean_words": 6.2},
    "lead_baseline": {"name": "lead_k", "words": 9, "rouge_l": 0.2512},
    "baselines": {"lead_k": {"rouge_l": 0.2512, "bleu": 5.0, "mean_words": 9.0}},
    "test_rows": 4000,
    "test": {
        "model": {"rouge_l": 0.3121, "bleu": 8.1, "mean_words": 6.2},
        "baselines": {"lead_k": {"rouge_l": 0.2512, "bleu": 5.0, "mean_words": 9.0},
                      "first_sentence": {"rouge_l": 0.2011, "bleu": 3.0, "mean_words": 14.0}},
    },
    "heldout": {
        "rows": 900,
        "model": {"rouge_l": 0.3105, "bleu": 7.9, "mean_words": 6.0},
        "baselines": {"lead_k": {"rouge_l": 0.2433, "bleu": 4.8, "mean_words": 9.0}},
        "best_baseline": {"name": "lead_k", "rouge_l": 0.2433},
        "margin_rouge_l": 0.0672,
        "repositories": {"ollama/ollama": {"rows": 300, "model": {"rouge_l": 0.2987},
                                           "best_baseline": {"rouge_l": 0.2211}, "margin_rouge_l": 0.0776}},
    },
}  # fmt: skip
PROVENANCE = {
    "model_name": "issue-summarization",
    "job_id": "5f0c3a9d2b7e4d1f8a6c0e9b7d5a3f21",
    "inputs": {"train": {"commit": "1111aaaa"}, "split": {"commit": "2222bbbb"}},
    "quality_gate": {"passed": True, "beat_baseline": True},
}


def test_card_names_the_heldout_numbers_against_the_baselines() -> None:
    card = render_model_card(METRICS, PROVENANCE)

    assert "Model ROUGE-L **0.3105** vs best baseline (lead k) 0.2433: margin 0.0672" in card
    assert "| ollama/ollama | 300 | 0.2987 | 0.2211 | 0.0776 |" in card
    assert "| **model** | **0.3121** |" in card and "| first sentence | 0.2011 |" in card


def test_card_says_intended_use_data_licences_commits_and_limits() -> None:
    card = render_model_card(METRICS, PROVENANCE)

    for heading in ("## Intended use", "## Training data", "## Results", "## Known limits"):
        assert heading in card
    assert "Apache-2.0" in card and "MIT" in card and "BSD-3-Clause" in card
    assert "`train`: commit `1111aaaa`" in card
    assert "5f0c3a9d2b7e4d1f8a6c0e9b7d5a3f21" in card


def test_card_without_heldout_split_says_so() -> None:
    metrics = {key: value for key, value in METRICS.items() if key != "heldout"}

    assert "no held-out-repository results" in render_model_card(metrics, PROVENANCE)


def test_build_writes_the_card_into_the_bundle_with_its_measured_numbers(chain) -> None:
    bundle = chain["build"]
    card = (bundle / "MODEL_CARD.md").read_text(encoding="utf-8")
    metrics = json.loads((bundle / "metrics.json").read_text())
    provenance = json.loads((bundle / "provenance.json").read_text())

    assert "MODEL_CARD.md" in provenance["files"]  # checksummed like every bundle file
    verify_bundle(bundle)
    assert f"**{metrics['model']['rouge_l']:.4f}**" in card
    if "heldout" in metrics:
        assert f"Model ROUGE-L **{metrics['heldout']['model']['rouge_l']:.4f}**" in card
    else:
        assert "no held-out-repository results" in card
