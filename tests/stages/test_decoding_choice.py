"""`stages evaluate` and `build` choose the length penalty and copy bias on the model's own validation rows: the rows
Keras held out of the fit, scored like every other split; unless told, or there are too few of them."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from issue_titles import evaluate
from issue_titles.csvio import write_issues
from issue_titles.evaluate import choose_decoding, load_for_split, read_test_split, validation_rows
from issue_titles.metrics import rouge_l
from issue_titles.predictor import DEFAULT_COPY_BIAS, DEFAULT_LENGTH_PENALTY, TitlePredictor
from tests.tiny_model import tiny_issues


@pytest.fixture(scope="module")
def trained(tiny_training):
    """The run's tiny training (tests/conftest.py) and its split; read-only."""
    return tiny_training / "train", tiny_training / "split"


@pytest.fixture(scope="module", autouse=True)
def one_predictor_per_decoding():
    """One `TitlePredictor` per model folder and decoding options for the module, and one per base predictor and
    options from `with_decoding`: each is built by the real method the first time and handed out again after.

    A load builds the model and traces its decoders (seconds), and the tests here ask for the same few again
    and again: the full grid's candidates include the smaller grids' ones, evaluate decodes with the candidate it
    chose, the tests re-decode a candidate to check its score. A predictor decodes the same titles however often it
    is asked, so what each test checks (which options were chosen, and what they decode to) is unchanged; options
    not asked for before are another real load or `with_decoding`."""
    real_load = TitlePredictor.__dict__["load"].__func__  # the classmethod's function, called with the class below
    real_with_decoding = TitlePredictor.with_decoding
    loaded: dict[tuple, TitlePredictor] = {}
    derived: dict[tuple, tuple[TitlePredictor, TitlePredictor]] = {}  # the base is kept so its id is not reused

    def load(cls, folder, verify=True, **options):
        given = tuple(sorted((key, value) for key, value in options.items() if value is not None))
        key = (str(Path(folder).resolve()), verify, given)
        if key not in loaded:
            loaded[key] = real_load(cls, folder, verify, **options)
        return loaded[key]

    def with_decoding(self, **options):
        key = (id(self), tuple(sorted(options.items())))
        if key not in derived:
            derived[key] = (self, real_with_decoding(self, **options))
        return derived[key][1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TitlePredictor, "load", classmethod(load))
        patch.setattr(TitlePredictor, "with_decoding", with_decoding)
        yield


def test_validation_rows_are_the_rows_keras_held_out_of_the_fit(trained):
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    model, split = trained
    training = json.loads((model / "model.json").read_text())["training"]
    (_,), (held,) = train_validation_split((np.arange(training["train_rows"]),),
                                           validation_split=training["validation_split"])  # fmt: skip
    rows, why_not = validation_rows(split, model)
    assert why_not == "" and rows == [read_test_split(split, "train.csv")[i] for i in held]
    # ... and they are the rows pre_process encoded last, in train.csv's order
    encoded = TitlePredictor.load(model).encoder.encode_bodies([row.body for row in rows])["body"]
    assert np.array_equal(encoded, np.load(model.parent / "pre_process" / "train_body.npy")[held])


def test_no_validation_rows_from_a_split_the_model_was_not_trained_from(trained, tmp_path):
    model, split = trained
    write_issues(tmp_path / "train.csv", read_test_split(split, "train.csv")[:-1])
    rows, why_not = validation_rows(tmp_path, model)
    assert rows == [] and "not the split it was trained from" in why_not
    assert validation_rows(tmp_path / "nothing", model) == ([], "the split has no train.csv")


def test_the_choice_is_the_best_scoring_pair_and_each_score_is_that_decodings_rouge_l(trained):
    model, split = trained
    predictor = TitlePredictor.load(model)
    rows = read_test_split(split, "train.csv")  # any rows will do for the arithmetic
    choice = choose_decoding(predictor, rows, sample=40)
    pairs = [(score["length_penalty"], score["copy_bias"]) for score in choice["scores"]]
    assert pairs == [(a, c) for a in evaluate.TUNED_LENGTH_PENALTIES for c in evaluate.TUNED_COPY_BIASES]
    best = max(choice["scores"], key=lambda score: score["rouge_l"])
    assert (choice["length_penalty"], choice["copy_bias"]) == (best["length_penalty"], best["copy_bias"])
    sampled = choice["rows"]
    assert sampled == 40
    last = choice["scores"][-1]
    shuffled = list(rows)
    __import__("random").Random(0).shuffle(shuffled)
    titles = predictor.with_decoding(length_penalty=last["length_penalty"], copy_bias=last["copy_bias"]).predict(
        [row.body for row in shuffled[:sampled]]
    )
    assert last["rouge_l"] == round(rouge_l(titles, [row.issue_title for row in shuffled[:sampled]]), 4)


def test_the_tutorials_model_is_tuned_without_a_copy_bias(tutorial_predictor, monkeypatch):
    # Two penalties instead of four: what is checked is that no copy bias (the grid still has 1.6) is tried for any
    # of them. The predictor is the session's TitlePredictor.load(tutorial_model), whose decoder (the candidates
    # share it: a penalty is an input of the compiled decoder) the other modules' tutorial tests trace too.
    monkeypatch.setattr(evaluate, "TUNED_LENGTH_PENALTIES", (1.5, 2.25))
    assert 1.6 in evaluate.TUNED_COPY_BIASES
    rows = tiny_issues(20, seed=4)
    assert tutorial_predictor.architecture == "tutorial"
    choice = choose_decoding(tutorial_predictor, rows)
    assert {score["copy_bias"] for score in choice["scores"]} == {1.0}


def test_too_few_validation_rows_keep_the_defaults_and_say_why(trained):
    model, split = trained
    predictor, choice = load_for_split(model, split)
    assert choice["chosen_on"] == "defaults" and "fewer than" in choice["why"]
    assert (predictor.length_penalty, predictor.copy_bias) == (DEFAULT_LENGTH_PENALTY, DEFAULT_COPY_BIAS)


def test_a_previous_build_whose_choice_does_not_carry_over_is_named_with_the_reason(trained, tmp_path):
    """A full training chooses anew even with a previous build at hand; the record says why it did not reuse it."""
    model, split = trained
    before = tmp_path / "before"
    before.mkdir()
    (before / "provenance.json").write_text(json.dumps({"decoding_choice": {"chosen_on": "validation rows"}}))
    _, choice = load_for_split(model, split, previous_bundle=before)
    assert choice["chosen_on"] == "defaults"
    assert choice["not_reused"] == "a full training chooses its decoding anew"


def test_enough_validation_rows_choose_the_decoding_evaluate_then_uses(trained, tmp_path, monkeypatch):
    model, split = trained
    monkeypatch.setattr(evaluate, "MIN_TUNING_ROWS", 1)
    # A 2 x 2 grid (each candidate decodes the rows; the full grid is test_the_choice_is_the_best_scoring_pair_...'s)
    # without the default penalty: the choice cannot be the defaults, so evaluate using the defaults would fail here.
    monkeypatch.setattr(evaluate, "TUNED_LENGTH_PENALTIES", (1.5, 2.25))
    monkeypatch.setattr(evaluate, "TUNED_COPY_BIASES", (1.0, 1.6))
    metrics = evaluate.run_evaluate(model, split, tmp_path / "metrics")
    choice = metrics["decoding_choice"]
    assert choice["chosen_on"] == "validation rows"
    assert len(choice["scores"]) == 4 and choice["length_penalty"] != DEFAULT_LENGTH_PENALTY
    assert metrics["decoding"]["length_penalty"] == choice["length_penalty"]
    assert metrics["decoding"]["copy_bias"] == choice["copy_bias"]


def test_given_options_are_not_tuned(trained, monkeypatch):
    model, split = trained
    monkeypatch.setattr(evaluate, "MIN_TUNING_ROWS", 1)
    predictor, choice = load_for_split(model, split, length_penalty=0.5)
    assert choice == {"chosen_on": "given"}
    assert predictor.length_penalty == 0.5


def test_a_bundle_records_the_chosen_decoding_and_is_served_with_it(trained, tmp_path, monkeypatch):
    from issue_titles.build import run_build

    model, split = trained
    monkeypatch.setattr(evaluate, "MIN_TUNING_ROWS", 1)
    monkeypatch.setattr(evaluate, "TUNED_LENGTH_PENALTIES", (0.5,))  # an alpha no default has
    monkeypatch.setattr(evaluate, "TUNED_COPY_BIASES", (1.0,))  # and a bias that is not the default: one candidate
    bundle = tmp_path / "bundle"
    run_build([model, split], bundle, env={}, beat_baseline=False)
    provenance = json.loads((bundle / "provenance.json").read_text())
    assert provenance["decoding"]["length_penalty"] == 0.5 and provenance["decoding"]["copy_bias"] == 1.0
    served = TitlePredictor.load_bundle(bundle)  # what the serving runtime loads
    assert (served.length_penalty, served.copy_bias) == (0.5, 1.0)
    # evaluating the bundle again keeps what it records
    copy = shutil.copytree(split, tmp_path / "split")
    _, choice = load_for_split(bundle, copy)
    assert choice == {"chosen_on": "recorded by the bundle"}


def test_the_build_of_an_updated_model_reuses_the_previous_builds_choice(trained, tmp_path, monkeypatch):
    """The pipeline's previous output commit (here as localpach names it) is the bundle this model was updated from:
    its chosen alpha is kept although choosing anew would now pick another."""
    from issue_titles.build import run_build
    from issue_titles.incremental import sha256_file

    model, split = trained
    monkeypatch.setattr(evaluate, "MIN_TUNING_ROWS", 1)
    monkeypatch.setattr(evaluate, "TUNED_LENGTH_PENALTIES", (0.5,))
    # One candidate, as in test_a_bundle_records_...: each traces a decoder, and what is checked is that the alpha
    # chosen before is kept, not how many copy biases were tried for it.
    monkeypatch.setattr(evaluate, "TUNED_COPY_BIASES", (1.0,))
    before = tmp_path / "before"
    run_build([model, split], before, env={}, beat_baseline=False)
    updated = shutil.copytree(model, tmp_path / "updated" / "train")
    info = json.loads((updated / "model.json").read_text())
    info["lineage"] = {"mode": "update", "started_from": {"weights_sha256": sha256_file(before / "model.weights.h5")}}
    (updated / "model.json").write_text(json.dumps(info))
    monkeypatch.setattr(evaluate, "TUNED_LENGTH_PENALTIES", (1.5,))
    env = {"ISSUE_TITLES_PREVIOUS_OUTPUT": "parent-commit", "LOCALPACH_PREVIOUS_OUTPUT": str(before)}

    provenance = run_build([updated, split], tmp_path / "after", env=env, beat_baseline=False)

    assert provenance["decoding"]["length_penalty"] == 0.5
    assert provenance["decoding_choice"] == {"chosen_on": "previous build", "reuses": 1}
    metrics = json.loads((tmp_path / "after" / "metrics.json").read_text())
    assert "scores" not in metrics["decoding_choice"]  # nothing was decoded to choose
