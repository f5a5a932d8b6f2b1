"""Beam search with a length penalty: the compiled batched decoder gives the per-hypothesis reference loop's titles,
keeps greedy decoding's rules, and refuses options it cannot honour."""

import json
from pathlib import Path

import pytest

from issue_titles.errors import StageError
from issue_titles.predictor import DEFAULT_BEAM_WIDTH, DEFAULT_COPY_BIAS, DEFAULT_LENGTH_PENALTY, TitlePredictor
from tests.stages.conftest import run_stages
from tests.stages.graph_reference import reference_titles
from tests.tiny_model import tiny_issues

# Unseen bodies (other seeds than the training rows) plus the edge cases a server gets.
BODIES = [issue.body for issue in tiny_issues(14, seed=11)] + [
    "",
    "the helm chart fails to render",
    "cache cache cache cache parser parser",
    "Ünïcödé 😀",
]


# The tiny model, loaded once for the session (tests/stages/conftest.py `tiny_predictor`, shared with the other
# decoding modules): the decoding tests take their options with `with_decoding` (the same model and encoder, no
# second read of the weights) instead of one `TitlePredictor.load` each. Loading with options is guarded below
# (test_default_decoding_is_beam_search, test_a_served_bundle_decodes_as_it_was_gated_...).
@pytest.fixture(scope="module")
def loaded(tiny_predictor) -> TitlePredictor:
    return tiny_predictor


# The beam width of every tiny-model beam search below (3, the width the reference comparisons have always used):
# the width is not what those tests check (the reference loop's titles, min length, the length penalty, chunking,
# option sharing), and each width traces a decoder of its own (~1.5 CPU s) while predictors of one width share it
# whatever their other options. They used 3, 4 and 5: three traces for what one checks as well.
WIDTH = 3


@pytest.fixture(scope="module")
def beam(loaded) -> TitlePredictor:
    """One width-WIDTH predictor for the tests that only read its titles (built once; its decoder is shared)."""
    return loaded.with_decoding(beam_width=WIDTH)


def test_default_decoding_is_beam_search(loaded):
    assert loaded.beam_width == DEFAULT_BEAM_WIDTH > 1
    assert loaded.decoding["method"] == "beam"


def test_batched_beam_search_gives_the_reference_loop_titles(beam):
    predictor = beam
    assert predictor.beam_width == WIDTH > 1
    assert predictor.predict(BODIES, chunk_size=5) == reference_titles(predictor, BODIES)


def test_batched_beam_search_gives_the_reference_loop_titles_for_the_tutorial_architecture(tutorial_predictor):
    # The session's load of the tutorial model, decoding as loaded (the default beam width, 2): the architecture is
    # what is checked here, and that decoder is the one the other modules' tutorial tests trace (one trace, not two).
    predictor = tutorial_predictor
    assert predictor.architecture == "tutorial" and predictor.beam_width == DEFAULT_BEAM_WIDTH > 1
    assert predictor.predict(BODIES, chunk_size=5) == reference_titles(predictor, BODIES)


def test_beam_width_one_is_greedy_decoding(loaded):
    greedy = loaded.with_decoding(beam_width=1)
    assert greedy.decoding["method"] == "greedy"
    encoded = greedy.encoder.encode_bodies(BODIES)
    # the compiled greedy loop, called directly
    ids = greedy.decoder(xla=False)(encoded["body"], encoded["body_copy"], encoded["body_grams"]).numpy()
    titles = greedy.predict(BODIES)
    assert titles == greedy.encoder.decode(ids, encoded["body_tokens"])
    assert titles == reference_titles(greedy, BODIES)


def test_beam_titles_are_non_empty_and_never_repeat_a_word(beam):
    titles = beam.predict([issue.body for issue in tiny_issues(40, seed=5)] + BODIES)
    assert all(title.strip() for title in titles)
    assert all(len(title.split()) == len(set(title.split())) for title in titles)


def test_chunk_size_does_not_change_beam_titles(beam):
    assert beam.predict(BODIES, chunk_size=7) == beam.predict(BODIES, chunk_size=512)


def test_min_length_holds_back_the_end_marker(loaded):
    predictor = loaded.with_decoding(beam_width=WIDTH, min_length=4)
    titles = predictor.predict(BODIES)
    assert all(len(title.split()) >= 4 for title in titles)
    assert titles == reference_titles(predictor, BODIES)


def test_a_stronger_length_penalty_never_shortens_a_title(loaded):
    """The hypotheses kept depend only on log-probabilities; the penalty only ranks the candidates at the end, and a
    larger alpha favours longer ones. So per body, title length is non-decreasing in alpha."""
    plain = loaded.with_decoding(beam_width=WIDTH, length_penalty=0.0).predict(BODIES)
    strong = loaded.with_decoding(beam_width=WIDTH, length_penalty=3.0).predict(BODIES)
    assert all(len(long.split()) >= len(short.split()) for short, long in zip(plain, strong, strict=True))


def test_predictors_that_differ_only_in_penalty_min_length_or_copy_bias_run_one_trace(loaded):
    """Those options are inputs of the compiled decoder (build tunes eight pairs of them on one trace); each
    predictor still decodes with its own, as the per-token reference loop does. (The module's one width: the other
    tests' predictors of that width, with their own options, share the one trace too.)"""
    options = ({"length_penalty": 0.5}, {"length_penalty": 2.5, "copy_bias": 1.0}, {"min_length": 3, "copy_bias": 4.0})
    same_width = [loaded.with_decoding(beam_width=WIDTH, **each) for each in options]
    assert len({id(predictor.decoders) for predictor in same_width}) == 1
    titles = [predictor.predict(BODIES[:6]) for predictor in same_width]
    assert same_width[0].decoders(same_width[0].rules, jit_compile=False).experimental_get_tracing_count() == 1
    assert len({tuple(each) for each in titles}) > 1
    for predictor, each in zip(same_width, titles, strict=True):
        assert each == reference_titles(predictor, BODIES[:6])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_width": 0}, "beam_width must be a whole number of at least 1"),
        ({"beam_width": 2.5}, "beam_width must be a whole number of at least 1"),
        ({"beam_width": True}, "beam_width must be a whole number of at least 1"),
        ({"length_penalty": -0.5}, "length_penalty must be 0 or more"),
        ({"length_penalty": float("nan")}, "length_penalty must be 0 or more"),
        ({"length_penalty": "1"}, "length_penalty must be a number"),
        ({"min_length": -1}, "min_length must be a whole number of at least 0"),
    ],
)
def test_bad_decoding_options_are_refused_before_loading(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TitlePredictor.load(tmp_path / "no-such-model", **options)  # refused before the missing folder is noticed


def test_min_length_longer_than_the_model_titles_is_refused(tiny):
    with pytest.raises(StageError, match="leaves no room for the end marker"):
        TitlePredictor.load(tiny, min_length=50)


def test_evaluate_command_records_the_decoding_it_was_given(tiny, tmp_path):
    from issue_titles.csvio import write_issues

    split = tmp_path / "split"
    split.mkdir()
    write_issues(split / "test.csv", tiny_issues(12, seed=9))
    code = run_stages("evaluate", "--model", tiny, "--input", split, "--output", tmp_path / "metrics",
                      "--beam-width", "2", "--length-penalty", "0.6")  # fmt: skip
    assert code == 0
    decoding = json.loads((tmp_path / "metrics" / "metrics.json").read_text())["decoding"]
    assert decoding == {
        "method": "beam",
        "beam_width": 2,
        "length_penalty": 0.6,
        "min_length": 0,
        "copy_bias": DEFAULT_COPY_BIAS,
    }


@pytest.mark.parametrize("argument", [["--beam-width", "0"], ["--length-penalty", "-1"]])
def test_predict_command_refuses_bad_decoding_options(argument, tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_stages("predict", "--model", tiny, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                   *argument)  # fmt: skip
    assert stopped.value.code == 2
    assert argument[0] in capsys.readouterr().err


@pytest.fixture(scope="module")
def greedy_bundle(tmp_path_factory, tiny_training) -> Path:
    """A bundle built (evaluated and gated) with `--beam-width 1` from the run's tiny training."""
    from issue_titles.build import run_build

    bundle = tmp_path_factory.mktemp("greedy") / "bundle"
    run_build([tiny_training / "train", tiny_training / "split"], bundle, env={}, beat_baseline=False, beam_width=1)
    return bundle


def test_a_bundle_records_the_decoding_its_gate_measured(greedy_bundle):
    provenance = json.loads((greedy_bundle / "provenance.json").read_text())
    metrics = json.loads((greedy_bundle / "metrics.json").read_text())
    assert provenance["decoding"] == {
        "beam_width": 1,
        "length_penalty": DEFAULT_LENGTH_PENALTY,
        "min_length": 0,
        "copy_bias": DEFAULT_COPY_BIAS,
    }
    assert metrics["decoding"]["beam_width"] == 1


def test_a_served_bundle_decodes_as_it_was_gated_unless_told_otherwise(greedy_bundle):
    assert TitlePredictor.load_bundle(greedy_bundle).decoding["method"] == "greedy"  # what the serving runtime loads
    assert TitlePredictor.load(greedy_bundle).beam_width == 1
    assert TitlePredictor.load(greedy_bundle, beam_width=3).beam_width == 3


def test_a_bad_recorded_decoding_is_refused_naming_the_file(greedy_bundle, tmp_path):
    import shutil

    from issue_titles.errors import StageError

    copy = Path(shutil.copytree(greedy_bundle, tmp_path / "bundle"))
    provenance = json.loads((copy / "provenance.json").read_text())
    (copy / "provenance.json").write_text(json.dumps(provenance | {"decoding": {"beam_width": 0}}))
    with pytest.raises(StageError, match="recorded decoding: beam_width must be") as refused:
        TitlePredictor.load_bundle(copy)
    assert "provenance.json" in str(refused.value)
