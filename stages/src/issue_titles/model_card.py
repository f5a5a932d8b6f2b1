"""MODEL_CARD.md for a serving bundle: what the model is for, what it learned from (and under which licences), how it
scored against the extractive baselines on the test split and on repositories it never saw, and its known limits.

Written by `stages build` from the metrics it just measured and the provenance it records, so the card always
describes the bundle it sits in. Pure function of its inputs (no I/O); the server serves the file as it is.
"""

from typing import Any

from issue_titles.contract import MODEL_NAME

# The vendored data set (data/README.md); the stage image does not carry the repository's data/ folder, so the
# summary of its sources and licences lives here.
DATA_SET = "github_pr_issues_large.csv.gz"
DATA_SUMMARY = (
    "76,923 squash-merged pull requests (title + description) from 38 public repositories in ML, infrastructure "
    "and developer tools (Python, Go, Rust, TypeScript), built from each repository's public git history "
    "(newest snapshot 2026-11-30); bot, merge, bump, release and revert commits excluded, templates and trailers "
    "removed, bodies of 15-600 words and titles of 3-25 words kept, duplicates dropped."
)
DATA_LICENCES = (
    ("Apache-2.0", "26 repositories (pachyderm/pachyderm: only its Apache-2.0 eras, before 2020-03-10 and from "
                   "2023-04-13)"),
    ("MIT", "8: astral-sh/ruff, denoland/deno, temporalio/temporal, nushell/nushell, python/mypy, "
            "getsentry/sentry-python, ollama/ollama, wandb/wandb"),
    ("Apache-2.0 OR MIT", "2: astral-sh/uv, biomejs/biome"),
    ("BSD-3-Clause", "2: pytorch/ao, prefix-dev/pixi"),
)  # fmt: skip

KNOWN_LIMITS = (
    "Trained on pull-request descriptions, not issue reports: an issue written as a question or a stack trace gets a "
    'title in the style of a change ("Fix ...", "Add ...").',
    "English only; bodies are truncated to the model's body length (the tokens after it are never read).",
    "Titles are short (the training titles have 3-25 words) and can repeat across similar bodies; see "
    "`distinct_titles` and `most_common_title` in metrics.json.",
    "On repositories it has never seen the model is only slightly better than copying the body's first words "
    "(the held-out margin below); words outside its vocabulary can only be copied, not generated.",
    "ROUGE-L against the human title measures word overlap, not correctness: a fluent title can still be wrong.",
    "The texts remain their authors' under the licences above; a generated title can repeat phrases from them.",
)


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def _baseline_name(name: str) -> str:
    return name.replace("_", " ")


def _systems_table(scores: dict[str, Any]) -> list[str]:
    """Model and every baseline: ROUGE-L, BLEU, mean words (one split's `score_systems` summary)."""
    lines = ["| system | ROUGE-L | BLEU | mean words |", "|---|---|---|---|"]
    model = scores.get("model") or {}
    lines.append(f"| **model** | **{_number(model.get('rouge_l'))}** | {_number(model.get('bleu'), 2)} | "
                 f"{_number(model.get('mean_words'), 2)} |")  # fmt: skip
    for name, baseline in sorted((scores.get("baselines") or {}).items(), key=lambda item: -item[1]["rouge_l"]):
        lines.append(f"| {_baseline_name(name)} | {_number(baseline.get('rouge_l'))} | "
                     f"{_number(baseline.get('bleu'), 2)} | {_number(baseline.get('mean_words'), 2)} |")  # fmt: skip
    return lines


def render_model_card(metrics: dict[str, Any], provenance: dict[str, Any]) -> str:
    """The card's Markdown text, from build's metrics.json content and its provenance record (without `files`)."""
    training = provenance.get("training") or {}
    code = provenance.get("code") or {}
    decoding = provenance.get("decoding") or {}
    gate = provenance.get("quality_gate") or {}
    heldout = metrics.get("heldout")
    version = provenance.get("job_id") or "(built outside Pachyderm: no job ID)"
    lines = [
        f"# Model card: {provenance.get('model_name', MODEL_NAME)}",
        "",
        "Generates a one-line title for a GitHub issue or pull-request body. Written by `stages build` with this "
        "bundle; the numbers below were measured by that build on the bundle's own weights and decoding.",
        "",
        "## Model",
        "",
        f"- version (Pachyderm job ID): `{version}`",
        f"- pipeline: `{provenance.get('pipeline') or 'n/a'}`, "
        f"output commit `{provenance.get('output_commit') or 'n/a'}`",
        f"- architecture: `{provenance.get('architecture') or 'n/a'}` (sequence-to-sequence, Keras 3 on TensorFlow)",
        f"- training: {training.get('epochs_run', 'n/a')} epochs (best {training.get('best_epoch', 'n/a')}), "
        f"{training.get('train_rows', 'n/a')} training rows, best validation loss "
        f"{_number(training.get('best_val_loss'))}",
        f"- decoding: beam width {decoding.get('beam_width', 'n/a')}, length penalty "
        f"{decoding.get('length_penalty', 'n/a')}, copy bias {decoding.get('copy_bias', 'n/a')}",
        f"- code: {code.get('package', 'issue-titles')} {code.get('version', '')} "
        f"(sources sha256 `{str(code.get('source_sha256', 'n/a'))[:16]}…`); built {provenance.get('built_at', 'n/a')}",
        "",
        "## Intended use",
        "",
        "Suggesting a title for a new issue or pull request from its body, for a person to accept or edit; the "
        "tutorial's demonstration of a Kubeflow + Pachyderm + Seldon pipeline. Not for labelling issues without "
        "review, for text that is not an English issue or PR description, or for judging the quality of a title.",
        "",
        "## Training data",
        "",
        f"`{DATA_SET}` (data/README.md in the repository): {DATA_SUMMARY}",
        "",
        "Licences of the source repositories (each repository's root LICENSE file); the texts remain their authors':",
        "",
    ]
    lines += [f"- {licence}: {which}" for licence, which in DATA_LICENCES]
    inputs = provenance.get("inputs") or {}
    if inputs:
        lines += ["", "Data commits this bundle was built from:", ""]
        lines += [f"- `{name}`: commit `{(source or {}).get('commit') or 'n/a'}`" for name, source in inputs.items()]
    lead = metrics.get("lead_baseline") or {}
    lines += [
        "",
        "## Results",
        "",
        f"ROUGE-L F1 against the human titles. Test split: {metrics.get('test_rows', 'n/a')} rows from the training "
        "repositories (never trained on).",
        "",
        *_systems_table(metrics.get("test") or {"model": metrics.get("model"), "baselines": metrics.get("baselines")}),
        "",
        f"Quality gate: model {_number(metrics.get('rouge_l'))} vs best extractive baseline "
        f"({_baseline_name(str(lead.get('name', 'n/a')))}) {_number(lead.get('rouge_l'))}: "
        f"{'passed' if gate.get('passed', True) else 'not passed'}"
        f"{' (built with --allow-below-baseline)' if gate.get('beat_baseline') is False else ''}.",
        "",
    ]
    if heldout:
        best = heldout.get("best_baseline") or {}
        model_rouge = (heldout.get("model") or {}).get("rouge_l")
        lines += [
            f"### Held-out repositories ({heldout.get('rows', 'n/a')} rows; repositories never seen in training)",
            "",
            f"Model ROUGE-L **{_number(model_rouge)}** vs best baseline ({_baseline_name(str(best.get('name')))}) "
            f"{_number(best.get('rouge_l'))}: margin {_number(heldout.get('margin_rouge_l'))}.",
            "",
            *_systems_table(heldout),
            "",
        ]
        repositories = heldout.get("repositories") or {}
        if repositories:
            lines += ["| repository | rows | model ROUGE-L | best baseline | margin |", "|---|---|---|---|---|"]
            for name, scores in repositories.items():
                lines.append(
                    f"| {name} | {scores.get('rows')} | {_number((scores.get('model') or {}).get('rouge_l'))} | "
                    f"{_number((scores.get('best_baseline') or {}).get('rouge_l'))} | "
                    f"{_number(scores.get('margin_rouge_l'))} |"
                )
            lines.append("")
    else:
        lines += ["The split had no heldout.csv, so there are no held-out-repository results.", ""]
    lines += ["## Known limits", ""] + [f"- {limit}" for limit in KNOWN_LIMITS] + [""]
    return "\n".join(lines)
