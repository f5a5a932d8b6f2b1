"""`stages evaluate`: score a trained model against the extractive baselines -> metrics.json.

Two evaluations: the row-level test split (`test.csv`: rows of the repositories the model trained on) and, when
the split holds one, the held-out repositories (`heldout.csv`: whole repositories never seen in training), overall
and per repository. The second is what a user running the model on their own repository gets.
"""

import time
from collections import Counter, defaultdict
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.csvio import Issue, ReadReport, read_issue_file
from issue_titles.errors import StageError
from issue_titles.jsonio import write_json
from issue_titles.metrics import LEAD_WORDS, best_lead_words, bleu, extractive_baselines, mean_words, rouge_l_scores
from issue_titles.predictor import TitlePredictor
from issue_titles.split import repository_of

EXAMPLES = 10
HELDOUT = "heldout.csv"


def read_test_split(split_dir: Path, name: str = "test.csv") -> list[Issue]:
    source = Path(split_dir) / name
    if not source.is_file():
        raise StageError(f"{name} not found (expected the output of `stages split`)", path=source)
    report = ReadReport()
    issues = read_issue_file(source, report, label=name)
    if not issues and name == "test.csv":
        raise StageError(f"no usable rows (skipped: {dict(report.skipped)})", path=source)
    return issues


def choose_lead_words(split_dir: Path) -> tuple[int, str]:
    """(k, where it came from): the best lead-k on train.csv, or LEAD_WORDS when the split has no train.csv."""
    source = Path(split_dir) / "train.csv"
    if not source.is_file():
        return LEAD_WORDS, "default"
    issues = read_issue_file(source, ReadReport(), label="train.csv")
    return best_lead_words([i.body for i in issues], [i.issue_title for i in issues]), "train.csv"


def _system_scores(per_row: list[float], predictions: list[str], references: list[str]) -> dict:
    return {
        "rouge_l": round(sum(per_row) / len(per_row), 4) if per_row else 0.0,
        "bleu": round(bleu(predictions, references), 2),
        "mean_words": round(mean_words(predictions), 2),
    }


def score_systems(issues: list[Issue], predictions: list[str], lead_k: int) -> dict:
    """The model and every extractive baseline on `issues`, overall and per repository."""
    references = [issue.issue_title for issue in issues]
    bodies = [issue.body for issue in issues]
    outputs = {"model": predictions} | {
        name: [make(body) for body in bodies] for name, make in extractive_baselines(lead_k).items()
    }
    per_row = {name: rouge_l_scores(output, references) for name, output in outputs.items()}
    groups: dict[str, list[int]] = defaultdict(list)
    for index, issue in enumerate(issues):
        groups[repository_of(issue.issue_url) or "(other)"].append(index)

    def summary(indexes: list[int]) -> dict:
        refs = [references[i] for i in indexes]
        systems = {
            name: _system_scores([per_row[name][i] for i in indexes], [outputs[name][i] for i in indexes], refs)
            for name in outputs
        }
        best = max((name for name in systems if name != "model"), key=lambda name: systems[name]["rouge_l"])
        titles = Counter(outputs["model"][i] for i in indexes)
        top_title, top_count = titles.most_common(1)[0]
        return {
            "rows": len(indexes),
            "model": systems.pop("model"),
            "baselines": systems,
            "best_baseline": {"name": best, "rouge_l": systems[best]["rouge_l"]},
            "margin_rouge_l": round(
                sum(per_row["model"][i] for i in indexes) / len(indexes) - systems[best]["rouge_l"], 4
            ),
            "reference_mean_words": round(mean_words(refs), 2),
            "distinct_titles": len(titles),
            "most_common_title": {"title": top_title, "count": top_count, "share": round(top_count / len(indexes), 4)},
        }

    result = summary(list(range(len(issues))))
    if len(groups) > 1 or "(other)" not in groups:
        result["repositories"] = {name: summary(indexes) for name, indexes in sorted(groups.items())}
    return result


def evaluate(predictor: TitlePredictor, issues: list[Issue], heldout: list[Issue] | None = None,
             lead_k: int = LEAD_WORDS, lead_k_source: str = "default") -> dict:
    """metrics.json's content. `lead_baseline` is the strongest extractive baseline on the test split (what the
    build gate compares with); `heldout` the same scores on the held-out repositories, per repository too."""
    bodies = [issue.body for issue in issues]
    started = time.monotonic()
    predictions = predictor.predict(bodies)
    seconds = time.monotonic() - started
    test = score_systems(issues, predictions, lead_k)
    best = test["best_baseline"]["name"]
    metrics = {
        "rouge_l": test["model"]["rouge_l"],
        "bleu": test["model"]["bleu"],
        "model": test["model"] | {"architecture": predictor.architecture},
        "lead_baseline": test["baselines"][best] | {"name": best} | ({"words": lead_k} if "lead" in best else {}),
        "baselines": test["baselines"],
        "lead_words": {"k": lead_k, "chosen_on": lead_k_source},
        "beats_baseline_rouge_l": test["model"]["rouge_l"] > test["baselines"][best]["rouge_l"],
        "test_rows": len(issues),
        "test": {key: value for key, value in test.items() if key != "repositories"},
        "distinct_titles": test["distinct_titles"],
        "decoding": predictor.decoding,
        "predict_seconds": round(seconds, 2),
        "examples": [
            {"body": issue.body[:200], "title": issue.issue_title, "predicted": predicted}
            for issue, predicted in zip(issues[:EXAMPLES], predictions[:EXAMPLES])
        ],
    }
    if heldout:
        metrics["heldout"] = score_systems(heldout, predictor.predict([issue.body for issue in heldout]), lead_k)
    return metrics


def evaluate_split(predictor: TitlePredictor, split_dir: Path) -> dict:
    """evaluate() on a `stages split` output: test.csv, heldout.csv when present, lead-k chosen on train.csv."""
    issues = read_test_split(split_dir)
    heldout = read_test_split(split_dir, HELDOUT) if (Path(split_dir) / HELDOUT).is_file() else None
    lead_k, source = choose_lead_words(split_dir)
    return evaluate(predictor, issues, heldout, lead_k, source)


def run_evaluate(
    model_dir: Path,
    split_dir: Path,
    output_dir: Path,
    beam_width: int | None = None,
    length_penalty: float | None = None,
) -> dict:
    predictor = TitlePredictor.load(model_dir, beam_width=beam_width, length_penalty=length_penalty)
    metrics = evaluate_split(predictor, split_dir)
    with atomic_output_dir(output_dir, step="evaluate", inputs=[model_dir, split_dir]) as staging:
        write_json(staging / "metrics.json", metrics)
    return metrics
