"""The pointer-generator's two body encoders train and decode; the cosine schedule warms up and decays to zero;
label smoothing and mixed precision are what they say."""

import json

import keras
import numpy as np
import pytest

from issue_titles.models import ModelConfig, build_model
from issue_titles.train import TrainSettings, learning_rate_schedule


def tiny_batch(rows: int = 32, length: int = 10, vocab: int = 50):
    rng = np.random.default_rng(0)
    body = rng.integers(2, vocab, size=(rows, length)).astype("int32")
    body[:, -2:] = 0  # padding at the end, as pre_process writes it
    title = np.concatenate([np.full((rows, 1), 2), body[:, :4], np.full((rows, 1), 3)], axis=1).astype("int32")
    x = {"body": body, "body_copy": body, "decoder_input": title[:, :-1], "target": title[:, 1:]}
    return x, title[:, 1:]


@pytest.mark.parametrize("encoder", ["bigru", "transformer"])
def test_each_encoder_learns_to_copy_the_opening_words(encoder):
    keras.utils.set_random_seed(1)
    config = ModelConfig("pointer_generator", 50, 50, 10, 6, 16, 32, 0.0, encoder=encoder, attention_heads=2)
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Nadam(0.01), loss=model.training_loss())
    # The optimizer's slots now, as `stages train` does (train.py): built inside fit's first step they make Keras
    # trace the whole training step twice (a tf.function that creates variables); the losses are the same.
    model.optimizer.build(model.trainable_variables)
    x, y = tiny_batch()
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0).history["loss"]
    assert history[-1] < history[0] / 2
    memory, state = model.encode(x["body"], x["body_copy"])
    scores, _ = model.step(x["decoder_input"][:, 0], memory, state)
    assert scores.shape == (32, config.output_size)
    np.testing.assert_allclose(np.asarray(scores).sum(axis=1), 1.0, rtol=1e-4)  # a distribution over ids


def test_an_unknown_encoder_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown encoder 'lstm'"):
        build_model(ModelConfig("pointer_generator", 50, 50, 10, 6, 16, 32, encoder="lstm"))


def test_the_cosine_schedule_warms_up_then_decays_to_zero_at_the_last_step():
    settings = TrainSettings(epochs=2, batch_size=10, learning_rate=0.002, validation_split=0.5).resolved()
    schedule = learning_rate_schedule(settings, train_rows=4000)  # 2 epochs x 200 steps
    rates = [float(schedule(step)) for step in (0, 20, 40, 220, 400)]
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.001, rel=1e-3) and rates[2] == pytest.approx(0.002)
    assert 0.0 < rates[3] < 0.002 and rates[4] == pytest.approx(0.0, abs=1e-9)


def test_the_constant_schedule_is_the_plain_learning_rate():
    settings = TrainSettings(architecture="tutorial").resolved()
    assert settings.schedule == "constant"
    assert learning_rate_schedule(settings, train_rows=1000) == settings.learning_rate


SMALL = ModelConfig("pointer_generator", 50, 50, 10, 6, 16, 32, 0.0)


@pytest.fixture(scope="module")
def plain_model():
    """A pointer-generator without label smoothing (seeded), built once for the label-smoothing tests, which only
    read it (a model build is an eager pass of its own). Tests must not change it."""
    keras.utils.set_random_seed(1)
    return build_model(SMALL)


def test_label_smoothing_adds_the_spread_over_the_vocabulary_to_the_loss(plain_model):
    model = plain_model
    x, y = tiny_batch()
    plain = float(model.training_loss()(y, model(x)))
    smoothed = build_model(SMALL, label_smoothing=0.2)  # the same network, its training output carries the spread
    smoothed.set_weights(model.get_weights())
    smoothed_loss = smoothed.training_loss()
    outputs = smoothed(x)
    assert outputs.shape == (*y.shape, 2)
    mask = y != 0
    nll, spread = -np.log(np.asarray(outputs[..., 0])), np.asarray(outputs[..., 1])
    expected = ((0.8 * nll + 0.2 * spread) * mask).sum() / mask.sum()
    assert float(smoothed_loss(y, outputs)) == pytest.approx(expected, rel=1e-5)
    assert nll[mask].mean() == pytest.approx(plain, rel=1e-5)  # the same P(target) as without smoothing


def test_label_smoothing_is_refused_for_the_tutorial_architecture():
    from issue_titles.errors import StageError

    with pytest.raises(StageError, match="--label-smoothing is out of range"):
        TrainSettings(architecture="tutorial", label_smoothing=0.1).resolved()
    with pytest.raises(ValueError, match="pointer_generator architecture only"):
        build_model(ModelConfig("tutorial", 50, 50, 10, 6, 16, 32), label_smoothing=0.1)


def test_label_smoothing_is_fixed_when_the_model_is_built_and_inference_is_unchanged(plain_model):
    plain, smoothed = plain_model, build_model(SMALL, label_smoothing=0.1)
    smoothed.set_weights(plain.get_weights())
    x, _ = tiny_batch()
    assert plain.label_smoothing == 0.0 and smoothed.label_smoothing == 0.1
    memory, state = smoothed.encode(x["body"], x["body_copy"])
    expected, _ = plain.step(x["decoder_input"][:, 0], *plain.encode(x["body"], x["body_copy"]))
    scores, _ = smoothed.step(x["decoder_input"][:, 0], memory, state)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(expected), rtol=1e-5)


@pytest.mark.parametrize("precision, architecture, gpus, policy", [
    ("auto", "default", 1, "mixed_float16"),
    ("auto", "default", 0, "float32"),
    ("auto", "tutorial", 1, "float32"),
    ("float32", "default", 1, "float32"),
    ("mixed", "default", 0, "mixed_float16"),
])  # fmt: skip
def test_mixed_precision_is_chosen_for_the_pointer_generator_on_a_gpu(precision, architecture, gpus, policy):
    from issue_titles.train import dtype_policy

    assert dtype_policy(TrainSettings(architecture, precision=precision).resolved(), gpus=gpus) == policy


def test_a_mixed_precision_training_gives_float32_weights_that_a_predictor_loads(tmp_path, tiny_training):
    """What a GPU training does (forced here on the CPU): float16 compute, float32 weights, probabilities and loss."""
    from issue_titles.predictor import TitlePredictor
    from issue_titles.train import run_train
    from tests.tiny_model import tiny_issues

    settings = TrainSettings(epochs=2, batch_size=16, embedding_dim=16, hidden_dim=16, dropout=0.0,
                             learning_rate=0.01, precision="mixed", verbose=0)  # fmt: skip
    info = run_train(tiny_training / "pre_process", tmp_path / "mixed", settings)  # the run's tiny pre_process output
    training = info["training"]
    assert training["precision"] == "mixed_float16"
    assert np.isfinite(training["final_loss"]) and training["final_loss"] < training["first_loss"]
    assert keras.mixed_precision.dtype_policy().name == "float32"  # the global policy is put back
    # Greedy: loading float32 weights and decoding with them does not depend on the search, and greedy's decoder
    # compiles in ~2/3 of beam search's time (~1.5 against ~2.3 CPU s; beam search: tests/stages/test_beam_search).
    predictor = TitlePredictor.load(tmp_path / "mixed", beam_width=1)
    assert all(weight.dtype == "float32" for weight in predictor.model.weights)
    titles = predictor.predict([issue.body for issue in tiny_issues(4, seed=3)])
    assert len(titles) == 4 and all(titles)
    assert json.loads((tmp_path / "mixed" / "model.json").read_text())["training"]["precision"] == "mixed_float16"
