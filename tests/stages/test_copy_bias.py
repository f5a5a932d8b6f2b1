"""The copy bias: a decoding option that scales the pointer-generator's copy odds. It changes nothing else in a step,
both decoders honour it alike, bundles record it, and options it cannot mean are refused."""

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from issue_titles.errors import StageError
from issue_titles.predictor import DEFAULT_COPY_BIAS, TitlePredictor
from tests.stages.conftest import run_stages
from tests.stages.graph_reference import reference_titles
from tests.tiny_model import tiny_issues

BODIES = [issue.body for issue in tiny_issues(16, seed=21)] + ["the helm chart fails to render", "Ünïcödé 😀"]


@pytest.fixture(scope="module")
def loaded(tiny_predictor) -> TitlePredictor:
    """The tiny model, loaded once for the session (tests/stages/conftest.py `tiny_predictor`); tests change its
    decoding with `with_decoding` (same weights)."""
    return tiny_predictor


@pytest.fixture(scope="module")
def decoding_with(loaded) -> Callable[[int, float], TitlePredictor]:
    """(beam_width, copy_bias) -> `loaded` decoding with them, one predictor per pair for the module (they share
    `loaded`'s compiled decoders: one trace per beam width, whatever the bias)."""
    return functools.cache(
        lambda beam_width, copy_bias: loaded.with_decoding(beam_width=beam_width, copy_bias=copy_bias)
    )


# The non-default copy bias both decoders are compared with.
COMPARED_BIAS = 2.5


@pytest.fixture(scope="module")
def step_scores(loaded) -> Callable[[float], np.ndarray]:
    """copy_bias -> the first decoding step's (bodies, output_size) probabilities. The bodies are encoded once: the
    encoder's output does not depend on the copy bias, which only enters `step`."""
    import tensorflow as tf

    encoded = loaded.encoder.encode_bodies(BODIES)
    memory, state = loaded.model.encode(
        tf.constant(encoded["body"]), tf.constant(encoded["body_copy"]), tf.constant(encoded["body_grams"])
    )
    start = tf.fill([len(BODIES)], loaded.encoder.start_id)

    def scores(copy_bias: float) -> np.ndarray:
        return np.asarray(loaded.model.step(start, memory, state, copy_bias)[0], np.float64)

    return scores


def test_the_copy_bias_multiplies_the_odds_of_copying_and_nothing_else(step_scores):
    """A step's scores are g·generated + (1 - g)·copied. The two parts are what a tiny and a huge bias leave; the
    switch's g, solved from each bias' scores, must have its odds of copying multiplied by the bias."""
    generated, copied = step_scores(1e-7), step_scores(1e7)

    def switch(scores: np.ndarray) -> np.ndarray:
        """Per body, the g that makes g·generated + (1 - g)·copied closest to `scores` (least squares)."""
        difference = generated - copied
        return ((scores - copied) * difference).sum(axis=1) / (difference * difference).sum(axis=1)

    plain, biased = step_scores(1.0), step_scores(3.0)
    g, g_biased = switch(plain), switch(biased)
    assert ((g > 0.01) & (g < 0.99)).all()  # the trained switch mixes both parts
    for scores, share in ((plain, g), (biased, g_biased)):  # ... and each bias' scores are such a mixture
        mixture = share[:, None] * generated + (1 - share[:, None]) * copied
        np.testing.assert_allclose(scores, mixture, atol=1e-5)
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose((1 - g_biased) / g_biased, 3.0 * (1 - g) / g, rtol=1e-3)


def test_a_bias_of_one_is_the_switch_as_trained(step_scores):
    np.testing.assert_array_equal(step_scores(1.0), step_scores(1))


@pytest.mark.parametrize("copy_bias", [1.0, COMPARED_BIAS])
def test_a_bias_given_as_a_tensor_scores_exactly_as_the_same_float(step_scores, copy_bias):
    """Compiled decoders pass the bias as an input tensor (one trace for every bias); the reference passes a float."""
    import tensorflow as tf

    np.testing.assert_array_equal(step_scores(tf.constant(copy_bias, tf.float32)), step_scores(copy_bias))


@pytest.mark.parametrize("beam_width", [1, 3])
def test_both_decoders_give_the_same_titles_with_a_copy_bias(decoding_with, beam_width):
    predictor = decoding_with(beam_width, COMPARED_BIAS)
    assert predictor.copy_bias == COMPARED_BIAS != DEFAULT_COPY_BIAS
    assert predictor.predict(BODIES, chunk_size=5) == reference_titles(predictor, BODIES)


def test_a_larger_copy_bias_copies_more_body_words(loaded, decoding_with):
    encoded = loaded.encoder.encode_bodies(BODIES)

    def copied_ids(copy_bias: float) -> int:
        predictor = decoding_with(1, copy_bias)
        ids = predictor.decoder(xla=False)(encoded["body"], encoded["body_copy"], encoded["body_grams"]).numpy()
        return int((ids >= predictor.config.title_vocab_size).sum())

    # The largest bias is the one the greedy decoder was compared with; on the tiny model the copied ids are
    # 1 < 4 < 9 (and 24 at a bias of 5).
    assert copied_ids(0.2) < copied_ids(1.0) < copied_ids(COMPARED_BIAS)


def test_the_default_applies_to_a_model_that_copies_and_one_to_the_tutorials(
    loaded, tutorial_model, tutorial_predictor
):
    assert loaded.decoding["copy_bias"] == DEFAULT_COPY_BIAS != 1.0
    tutorial = tutorial_predictor  # the session's TitlePredictor.load(tutorial_model), no options given
    assert tutorial.copy_bias == 1.0
    assert tutorial.predict(BODIES[:3]) == TitlePredictor.load(tutorial_model, copy_bias=1.0).predict(BODIES[:3])


def test_a_copy_bias_for_the_tutorials_model_is_refused_naming_the_model(tutorial_model):
    with pytest.raises(
        StageError, match=r"copy_bias 1\.6 applies to the pointer_generator architecture only"
    ) as refused:
        TitlePredictor.load(tutorial_model, copy_bias=1.6)
    assert str(tutorial_model) in str(refused.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [(0.0, "must be more than 0"), (-1.0, "must be more than 0"), (float("nan"), "must be more than 0"),
     (float("inf"), "must be more than 0"),
     (True, "must be a number"), ("2", "must be a number")],
)  # fmt: skip
def test_bad_copy_biases_are_refused_before_loading(value, message, tmp_path):
    with pytest.raises(ValueError, match=f"copy_bias {message}"):
        TitlePredictor.load(tmp_path / "no-such-model", copy_bias=value)


def test_a_bundle_records_its_copy_bias_and_one_recorded_before_it_existed_decodes_as_it_was_gated(tiny, tmp_path):
    provenance = json.loads((tiny / "provenance.json").read_text())
    assert provenance["decoding"]["copy_bias"] == DEFAULT_COPY_BIAS
    older = Path(shutil.copytree(tiny, tmp_path / "older"))
    decoding = {key: value for key, value in provenance["decoding"].items() if key != "copy_bias"}
    (older / "provenance.json").write_text(json.dumps(provenance | {"decoding": decoding}))
    assert TitlePredictor.load_bundle(older).copy_bias == 1.0
    assert TitlePredictor.load(older, copy_bias=2.0).copy_bias == 2.0


def test_evaluate_takes_the_copy_bias_and_records_it(tiny, tmp_path):
    from issue_titles.csvio import write_issues

    split = tmp_path / "split"
    split.mkdir()
    write_issues(split / "test.csv", tiny_issues(12, seed=9))
    code = run_stages("evaluate", "--model", tiny, "--input", split, "--output", tmp_path / "m", "--copy-bias", "1.3")
    assert code == 0
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["decoding"]["copy_bias"] == 1.3


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_the_cli_refuses_a_copy_bias_that_is_not_a_positive_number(value, tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_stages("predict", "--model", tiny, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
                   "--copy-bias", value)  # fmt: skip
    assert stopped.value.code == 2
    assert "--copy-bias" in capsys.readouterr().err


def test_the_cli_refuses_a_copy_bias_for_the_tutorials_model_with_exit_2(tutorial_model, tmp_path, capsys):
    from issue_titles.csvio import write_issues

    write_issues(tmp_path / "in.csv", tiny_issues(3, seed=2))
    code = run_stages("predict", "--model", tutorial_model, "--input", tmp_path / "in.csv", "--output",
                      tmp_path / "out.csv", "--copy-bias", "2")  # fmt: skip
    assert code == 2
    assert "applies to the pointer_generator architecture only" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
