"""`stages evaluate`: score a trained model on test.csv against the lead-words baseline -> metrics.json."""

import time
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import Issue, ReadReport, read_issue_file
from issue_titles.errors import StageError
from issue_titles.jsonio import write_json
from issue_titles.metrics import LEAD_WORDS, lead_words, score
from issue_titles.predictor import TitlePredictor

EXAMPLES = 10


def read_test_split(split_dir: Path) -> list[Issue]:
    source = Path(split_dir) / "test.csv"
    if not source.is_file():
        raise StageError("test.csv not found (expected the output of `stages split`)", path=source)
    report = ReadReport()
    issues = read_issue_file(source, report, label="test.csv")
    if not issues:
        raise StageError(f"no usable rows (skipped: {dict(report.skipped)})", path=source)
    return issues


def evaluate(predictor: TitlePredictor, issues: list[Issue]) -> dict:
    """metrics.json's content: the model's scores, the baseline's, and a few examples."""
    bodies = [issue.body for issue in issues]
    references = [issue.issue_title for issue in issues]
    started = time.monotonic()
    predictions = predictor.predict(bodies)
    seconds = time.monotonic() - started
    baseline = [lead_words(body) for body in bodies]
    model_scores = score(predictions, references)
    baseline_scores = score(baseline, references)
    return {
        "rouge_l": model_scores["rouge_l"],
        "bleu": model_scores["bleu"],
        "model": model_scores | {"architecture": predictor.architecture},
        "lead_baseline": baseline_scores | {"words": LEAD_WORDS},
        "beats_baseline_rouge_l": model_scores["rouge_l"] > baseline_scores["rouge_l"],
        "test_rows": len(issues),
        "distinct_titles": len(set(predictions)),
        "decoding": predictor.decoding,
        "predict_seconds": round(seconds, 2),
        "examples": [
            {"body": issue.body[:200], "title": issue.issue_title, "predicted": predicted}
            for issue, predicted in zip(issues[:EXAMPLES], predictions[:EXAMPLES])
        ],
    }


def run_evaluate(
    model_dir: Path,
    split_dir: Path,
    output_dir: Path,
    beam_width: int | None = None,
    length_penalty: float | None = None,
) -> dict:
    predictor = TitlePredictor.load(model_dir, beam_width=beam_width, length_penalty=length_penalty)
    metrics = evaluate(predictor, read_test_split(split_dir))
    with atomic_output_dir(output_dir, step="evaluate", inputs=[model_dir, split_dir]) as staging:
        write_json(staging / "metrics.json", metrics)
    return metrics
