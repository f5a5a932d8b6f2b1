"""The decoding-variants bench: its variants change only how a trained model picks titles, and it reports them."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

import bench.decoding_variants
from bench.decoding_variants import main, reranked, titles_for
from issue_titles.contract import MODEL_FILES
from issue_titles.csvio import write_issues
from issue_titles.decoding_options import DECODING_DEFAULTS, with_defaults
from issue_titles.model_loading import recorded_decoding
from issue_titles.predictor import TitlePredictor
from tests.tiny_model import tiny_issues


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_training):
    """The run's tiny trained model and a copy of its split whose held-out rows come from two github repositories."""
    model = tiny_training / "train"
    split = Path(shutil.copytree(tiny_training / "split", tmp_path_factory.mktemp("variants") / "split"))
    issues = tiny_issues(rows=24, seed=11)
    heldout = [dataclasses.replace(issue, issue_url=f"https://github.com/acme/{'ab'[n % 2]}/pull/{n + 1}")
               for n, issue in enumerate(issues)]  # fmt: skip
    write_issues(split / "heldout.csv", heldout)
    return model, split, [issue.body for issue in heldout]


@pytest.fixture(scope="module", autouse=True)
def one_predictor_per_load(tiny_training, tiny_bundle_dir, tiny_predictor):
    """`TitlePredictor.load` reads each folder's model once in this module; a load with decoding options is that
    model `with_decoding` the options `load` would resolve (given ones, else the folder's recorded ones, else the
    defaults: `with_defaults(given, recorded_decoding(folder))`, as `load` does), and it is handed out again for the
    same arguments, or for other arguments that resolve to the same options (`load(model)` and
    `load(model, beam_width=DEFAULT_BEAM_WIDTH, ...)` on a model that records none).

    A load and each compiled decoder's first decode cost seconds; the variants here load the same model with a few
    options again and again (the bench per variant, the tests to compare with). Predictors of one model share its
    compiled decoders, one per beam width, with the options as inputs, so they decode the titles a fresh load with
    those options decodes; a test comparing a variant with `TitlePredictor.load(...)` of the same options still fails
    when the variant passes other options: those resolve to other options, another predictor.

    The tiny training's model is the session's `tiny_predictor`'s (tests/conftest.py, loaded from the tiny bundle,
    whose decoders other modules traced) when the training's model files are byte for byte the bundle's (`stages
    build` copies them): the same weights, vocabularies and model.json, decoding with the options resolved here."""
    real = TitlePredictor.__dict__["load"].__func__  # the classmethod's function, called with the class below
    train = tiny_training / "train"
    same_files = all((train / name).read_bytes() == (tiny_bundle_dir / name).read_bytes() for name in MODEL_FILES)
    models: dict[str, TitlePredictor] = {str(train): tiny_predictor} if same_files else {}
    loaded: dict[tuple, TitlePredictor] = {}

    def resolved(folder, predictor: TitlePredictor) -> tuple:
        options = (predictor.beam_width, predictor.length_penalty, predictor.min_length, predictor.copy_bias)
        return str(folder), options, predictor.compiled_batch_limit

    def load(cls, folder, **options):
        if set(options) - set(DECODING_DEFAULTS):  # verify=, compiled_batch_limit=: not used here, a real load
            return real(cls, folder, **options)
        key = (str(folder), tuple(sorted(options.items())))
        if key not in loaded:
            if str(folder) not in models:
                models[str(folder)] = real(cls, folder)
            predictor = models[str(folder)].with_decoding(**with_defaults(options, recorded_decoding(Path(folder))))
            same = [seen for seen in loaded.values() if resolved(folder, seen) == resolved(folder, predictor)]
            loaded[key] = same[0] if same else predictor
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TitlePredictor, "load", classmethod(load))
        yield


@pytest.fixture(scope="module", autouse=True)
def one_scoring_per_candidates():
    """The reranker scores six candidate pools per call by teacher forcing (an eager model call each); the test of
    `reranked` and the bench's `rerank:2` row score the same held-out bodies' pools with the same predictor (above):
    the second gets the first's scores, a pure function of the predictor, the bodies and the titles."""
    real = bench.decoding_variants.title_log_probabilities
    scored: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def title_log_probabilities(predictor, bodies, titles):
        key = (id(predictor), tuple(bodies), tuple(titles))  # the predictors live as long as the module's cache
        if key not in scored:
            scored[key] = real(predictor, bodies, titles)
        logs, counts = scored[key]
        return logs.copy(), counts.copy()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench.decoding_variants, "title_log_probabilities", title_log_probabilities)
        yield


def test_a_copy_variant_is_the_predictors_copy_bias(trained):
    model, _, bodies = trained
    assert titles_for("copy:1.5", model, bodies) == TitlePredictor.load(model, copy_bias=1.5).predict(bodies)
    assert titles_for("beam:2:1.5:1", model, bodies) == TitlePredictor.load(
        model, beam_width=2, length_penalty=1.5, copy_bias=1.0
    ).predict(bodies)


def test_a_reranked_title_is_the_beam_title_or_an_extractive_candidate(trained):
    model, _, bodies = trained
    predictor = TitlePredictor.load(model)
    beam = predictor.predict(bodies)
    chosen = reranked(predictor, bodies, beam, alpha=2.0)
    assert len(chosen) == len(bodies)
    for body, beam_title, title in zip(bodies, beam, chosen, strict=True):
        assert title == beam_title or all(word.lower().strip(".,;`") in body.lower() for word in title.split())


def test_main_prints_one_row_per_variant_with_the_held_out_margin(trained, capsys):
    model, split, _ = trained
    assert main(["--model", str(model), "--split", str(split), "--variants", "beam:1:0,copy:1.5,rerank:2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(("| beam", "| copy", "| rerank"))]
    assert [row.split(" | ")[0] for row in rows] == ["| beam:1:0", "| copy:1.5", "| rerank:2"]
    assert all("acme/" in row for row in rows)  # the smallest margin names its repository


def test_main_adds_the_validation_columns_when_asked(trained, capsys):
    model, split, _ = trained
    assert main(["--model", str(model), "--split", str(split), "--variants", "copy:1.5", "--validation"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    row = next(line for line in lines if line.startswith("| copy:1.5"))
    assert header.endswith("| validation ROUGE-L | words validation |")
    assert len(row.split(" | ")) == len(header.split(" | "))


def test_main_refuses_validation_rows_from_a_split_the_model_was_not_trained_from(trained, tmp_path, capsys):
    from issue_titles.evaluate import read_test_split

    model, split, _ = trained
    write_issues(tmp_path / "train.csv", read_test_split(split, "train.csv")[:-1])
    write_issues(tmp_path / "test.csv", read_test_split(split, "test.csv"))
    write_issues(tmp_path / "heldout.csv", read_test_split(split, "heldout.csv"))
    with pytest.raises(SystemExit):
        main(["--model", str(model), "--split", str(tmp_path), "--variants", "beam:1:0", "--validation"])
    assert "not the split it was trained from" in capsys.readouterr().err
