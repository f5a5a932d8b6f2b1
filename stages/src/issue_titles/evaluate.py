"""`stages evaluate`: score a trained model against the extractive baselines -> metrics.json.

Two evaluations: the row-level test split (`test.csv`: rows of the repositories the model trained on) and, when
the split holds one, the held-out repositories (`heldout.csv`: whole repositories never seen in training), overall
and per repository. The second is what a user running the model on their own repository gets.
"""

import math
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TypedDict, Unpack

from issue_titles.atomic import atomic_output_dir
from issue_titles.contract import WEIGHTS_FILE
from issue_titles.csvio import Issue, ReadReport, read_issue_file
from issue_titles.errors import StageError
from issue_titles.jsonio import read_json, write_json
from issue_titles.metrics import (
    LEAD_WORDS,
    best_lead_words,
    bleu,
    extractive_baselines,
    mean_words,
    rouge_l,
    rouge_l_scores,
)  # fmt: skip
from issue_titles.model_config import POINTER_GENERATOR
from issue_titles.predictor import TitlePredictor, recorded_decoding
from issue_titles.progress import TENSORBOARD_DIR, predict_with_progress, write_decoding_choice
from issue_titles.provenance import PROVENANCE
from issue_titles.split import repository_of

EXAMPLES = 10
HELDOUT = "heldout.csv"

# Beam search's length penalty and the copy bias change only how titles are picked from a trained model, and the best
# values depend on the model (stages/README.md, "Decoding"): the full-data default scores best at alpha 1.75, while the
# demo's small model shortens its titles to 4 words there and wants 2. So `evaluate` and `build`, given a split, choose
# them on the training's own validation rows (never fitted) unless they are told, or the model is a bundle that
# records them.
TUNED_LENGTH_PENALTIES = (1.5, 1.75, 2.0, 2.25)
TUNED_COPY_BIASES = (1.0, 1.6)  # pointer_generator only; the tutorial's model does not copy
TUNING_ROWS = 3000  # a seeded sample of the validation rows: ~40 s for the full-data model on 2 cores
MIN_TUNING_ROWS = 500  # on fewer rows the choice would follow noise: the predictor's defaults apply
# An update (issue_titles.incremental) fine-tunes the previous model for one epoch at half its learning rate on ~1% new
# rows plus a replay sample; choosing its decoding anew would decode the tuning sample once per candidate (8 x 3,000
# rows for the full-data model, most of an update's build). So a build of an updated model reuses the choice of the
# build that bundled the very weights it was updated from, for at most MAX_CHOICE_REUSES builds in a row; the next
# one, and every build of a full training, chooses on its validation rows again.
MAX_CHOICE_REUSES = 9


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


def evaluate(
    predictor: TitlePredictor,
    issues: list[Issue],
    heldout: list[Issue] | None = None,
    lead_k: int = LEAD_WORDS,
    lead_k_source: str = "default",
) -> dict:
    """metrics.json's content. `lead_baseline` is the strongest extractive baseline on the test split (what the
    build gate compares with); `heldout` the same scores on the held-out repositories, per repository too."""
    bodies = [issue.body for issue in issues]
    started = time.monotonic()
    predictions = predict_with_progress(predictor.predict, bodies, "test.csv")
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
            for issue, predicted in zip(issues[:EXAMPLES], predictions[:EXAMPLES], strict=False)
        ],
    }
    if heldout:
        heldout_titles = predict_with_progress(predictor.predict, [issue.body for issue in heldout], "heldout.csv")
        metrics["heldout"] = score_systems(heldout, heldout_titles, lead_k)
    return metrics


def validation_rows(split_dir: Path, model_dir: Path) -> tuple[list[Issue], str]:
    """(the rows `stages train` validated on and never fitted, "") or ([], why there are none). Keras'
    `validation_split` holds out the arrays from floor(rows x (1 - split)) on, which pre_process wrote in train.csv's
    order; a train.csv of another length is not the one this model was trained from."""
    source = Path(split_dir) / "train.csv"
    if not source.is_file():
        return [], "the split has no train.csv"
    info = read_json(Path(model_dir) / "model.json")
    training = info.get("training") or {}
    keys = info.get("validation_row_keys")
    if isinstance(keys, list):  # an updated model (issue_titles.incremental) names its validation rows by key
        from issue_titles.shards import row_key

        wanted = set(keys)
        chosen = [i for i in read_issue_file(source, ReadReport(), label="train.csv") if row_key(i.issue_url) in wanted]
        return chosen, "" if chosen else "none of the model's validation rows is in train.csv"
    rows, fraction = training.get("train_rows"), training.get("validation_split")
    if not isinstance(rows, int) or not isinstance(fraction, int | float):
        return [], "model.json does not record train_rows and validation_split"
    issues = read_issue_file(source, ReadReport(), label="train.csv")
    if len(issues) != rows:
        return [], f"train.csv has {len(issues)} rows, the model trained on {rows}: not the split it was trained from"
    return issues[math.floor(rows * (1.0 - fraction)) :], ""


def choose_decoding(predictor: TitlePredictor, rows: list[Issue], sample: int = TUNING_ROWS, seed: int = 0) -> dict:
    """The length penalty and copy bias with the best ROUGE-L on (a seeded sample of) `rows`, at the predictor's beam
    width; every pair's score is kept. Ties go to the earlier pair (smaller alpha, then no bias)."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    rows = rows[:sample]
    bodies, references = [issue.body for issue in rows], [issue.issue_title for issue in rows]
    penalties = TUNED_LENGTH_PENALTIES if predictor.beam_width > 1 else (predictor.length_penalty,)
    biases = TUNED_COPY_BIASES if predictor.architecture == POINTER_GENERATOR else (1.0,)
    scores = []
    candidates = [(length_penalty, copy_bias) for length_penalty in penalties for copy_bias in biases]
    for number, (length_penalty, copy_bias) in enumerate(candidates, start=1):
        # One line per candidate on stderr: tuning decodes the sample once per candidate.
        print(
            f"choosing decoding: candidate {number}/{len(candidates)} (length penalty {length_penalty}, copy bias "
            f"{copy_bias}) on {len(rows)} validation rows",
            file=sys.stderr,
            flush=True,
        )
        candidate = predictor.with_decoding(length_penalty=length_penalty, copy_bias=copy_bias)
        scores.append({"length_penalty": length_penalty, "copy_bias": copy_bias,
                       "rouge_l": round(rouge_l(candidate.predict(bodies), references), 4)})  # fmt: skip
    best = max(scores, key=lambda score: score["rouge_l"])  # max keeps the first of equal scores
    return {"length_penalty": best["length_penalty"], "copy_bias": best["copy_bias"], "rows": len(rows),
            "scores": scores}  # fmt: skip


def inherited_choice(model_dir: Path, previous_bundle: Path | None, beam_width: int) -> tuple[dict | None, str]:
    """(the previous build's decoding choice for this model, "") or (None, why it does not apply). It applies to an
    updated model whose lineage names the weights the previous bundle holds, decoded at the same beam width, when
    that build chose on validation rows (or reused such a choice fewer than MAX_CHOICE_REUSES times)."""
    if previous_bundle is None:
        return None, "no previous build"
    lineage = read_json(Path(model_dir) / "model.json").get("lineage") or {}
    if lineage.get("mode") != "update":
        return None, "a full training chooses its decoding anew"
    provenance_path = Path(previous_bundle) / PROVENANCE
    if not provenance_path.is_file():
        return None, "the previous build has no provenance.json"
    provenance = read_json(provenance_path)
    started_from = (lineage.get("started_from") or {}).get("weights_sha256")
    if not started_from or (provenance.get("files") or {}).get(WEIGHTS_FILE) != started_from:
        return None, "the model was not updated from the weights the previous build bundled"
    recorded = recorded_decoding(Path(previous_bundle))
    if recorded.get("beam_width") != beam_width:
        return None, f"the previous build decoded at beam width {recorded.get('beam_width')}, this one at {beam_width}"
    before = provenance.get("decoding_choice") or {}
    if before.get("chosen_on") not in ("validation rows", "previous build"):
        return None, f"the previous build's decoding was not chosen on validation rows ({before.get('chosen_on')})"
    reuses = int(before.get("reuses", 0))
    if reuses >= MAX_CHOICE_REUSES:
        return None, f"chosen anew after {reuses} builds reused one choice"
    return {
        "chosen_on": "previous build",
        "why": f"the model was updated from the previous build's weights; reuse {reuses + 1} of {MAX_CHOICE_REUSES}",
        "length_penalty": recorded["length_penalty"],
        "copy_bias": recorded["copy_bias"],
        "reuses": reuses + 1,
        "previous_build": provenance.get("output_commit"),
    }, ""


def load_for_split(
    model_dir: Path,
    split_dir: Path,
    beam_width: int | None = None,
    length_penalty: float | None = None,
    copy_bias: float | None = None,
    previous_bundle: Path | None = None,
) -> tuple[TitlePredictor, dict]:
    """(the predictor to evaluate, how its decoding was chosen). Options given, or recorded by a bundle, are used as
    they are; an updated model reuses the previous build's choice (`inherited_choice`); otherwise the length penalty
    and copy bias are chosen on the model's validation rows in `split_dir` (`choose_decoding`), or the defaults
    apply when there are fewer than MIN_TUNING_ROWS of them."""
    predictor = TitlePredictor.load(model_dir, beam_width=beam_width, length_penalty=length_penalty,
                                    copy_bias=copy_bias)  # fmt: skip
    if length_penalty is not None or copy_bias is not None:
        return predictor, {"chosen_on": "given"}
    if (Path(model_dir) / PROVENANCE).is_file() and recorded_decoding(model_dir):
        return predictor, {"chosen_on": "recorded by the bundle"}
    inherited, not_inherited = inherited_choice(model_dir, previous_bundle, predictor.beam_width)
    if inherited is not None:
        reused = predictor.with_decoding(length_penalty=inherited["length_penalty"], copy_bias=inherited["copy_bias"])
        return reused, inherited
    # With a previous build at hand, say why its choice was not reused (e.g. the tenth build of a chain).
    anew = {"not_reused": not_inherited} if previous_bundle is not None else {}
    rows, why_not = validation_rows(split_dir, model_dir)
    if len(rows) < MIN_TUNING_ROWS:
        why_not = why_not or f"{len(rows)} validation rows, fewer than {MIN_TUNING_ROWS}"
        return predictor, {"chosen_on": "defaults", "why": why_not} | anew
    choice = choose_decoding(predictor, rows)
    tuned = predictor.with_decoding(length_penalty=choice["length_penalty"], copy_bias=choice["copy_bias"])
    return tuned, {"chosen_on": "validation rows"} | choice | anew


def evaluate_split(predictor: TitlePredictor, split_dir: Path) -> dict:
    """evaluate() on a `stages split` output: test.csv, heldout.csv when present, lead-k chosen on train.csv."""
    issues = read_test_split(split_dir)
    heldout = read_test_split(split_dir, HELDOUT) if (Path(split_dir) / HELDOUT).is_file() else None
    lead_k, source = choose_lead_words(split_dir)
    return evaluate(predictor, issues, heldout, lead_k, source)


class DecodingOptions(TypedDict, total=False):
    """`load_for_split`'s decoding options (None: chosen on the split, or the bundle's)."""

    beam_width: int | None
    length_penalty: float | None
    copy_bias: float | None


def evaluate_model(
    model_dir: Path, split_dir: Path, previous_bundle: Path | None = None, **decoding: Unpack[DecodingOptions]
) -> tuple[TitlePredictor, dict]:
    """(the predictor as evaluated, its metrics with `decoding_choice`): what `evaluate` reports is what `build`
    gates on and serves."""
    predictor, choice = load_for_split(model_dir, split_dir, previous_bundle=previous_bundle, **decoding)
    return predictor, evaluate_split(predictor, split_dir) | {"decoding_choice": choice}


def run_evaluate(
    model_dir: Path,
    split_dir: Path,
    output_dir: Path,
    beam_width: int | None = None,
    length_penalty: float | None = None,
    copy_bias: float | None = None,
) -> dict:
    _, metrics = evaluate_model(
        model_dir, split_dir, beam_width=beam_width, length_penalty=length_penalty, copy_bias=copy_bias
    )
    with atomic_output_dir(output_dir, step="evaluate", inputs=[model_dir, split_dir]) as staging:
        write_json(staging / "metrics.json", metrics)
        write_decoding_choice(staging / TENSORBOARD_DIR / "decoding", metrics["decoding_choice"])
    return metrics
