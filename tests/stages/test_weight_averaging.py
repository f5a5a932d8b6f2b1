"""Weight averaging: `stages train` saves the moving average of the weights over the last steps, sized to the run."""

import numpy as np
import pytest

from issue_titles.jsonio import read_json
from issue_titles.predictor import TitlePredictor
from issue_titles.train import TrainSettings, average_momentum

FULL_DATA_ROWS = 62_724  # the data set's training rows (validation included)


def test_the_full_data_default_averages_over_500_steps():
    settings = TrainSettings().resolved()
    assert average_momentum(settings, FULL_DATA_ROWS) == 0.998  # 1,728 planned steps: the window stays 500


def test_a_short_training_averages_over_its_last_third_only():
    settings = TrainSettings(epochs=3, batch_size=64).resolved()
    steps = 3 * 110  # 8,000 rows: 7,040 after validation, 110 batches of 64
    assert average_momentum(settings, 8_000) == pytest.approx(1 - 3 / steps)


def test_averaging_is_off_when_asked_and_for_the_tutorial():
    assert average_momentum(TrainSettings(average_steps=0).resolved(), FULL_DATA_ROWS) == 0.0
    assert average_momentum(TrainSettings(architecture="tutorial").resolved(), FULL_DATA_ROWS) == 0.0


def test_saved_weights_are_the_moving_average_of_every_steps_weights(tiny_cli_training):
    """The run's one CLI training of the tiny model records every step's weights (tests/conftest.py
    `tiny_cli_training`: BestEpoch.on_train_batch_end patched to keep them)."""
    recorded = np.load(tiny_cli_training / "steps.npz")
    count = len({name.split("_")[0] for name in recorded.files})
    width = len(recorded.files) // count
    steps = [[recorded[f"s{i}_{j}"] for j in range(width)] for i in range(count)]
    trained = tiny_cli_training / "train"
    training = read_json(trained / "model.json")["training"]
    momentum = training["average_momentum"]
    assert training["saved_weights"] == "moving average"
    assert momentum == pytest.approx(1 - 3 / len(steps))  # a window of a third of the run's steps
    average = steps[0]  # Keras starts the average at the first step's weights
    for weights in steps[1:]:
        average = [momentum * mean + (1 - momentum) * value for mean, value in zip(average, weights, strict=True)]
    saved = TitlePredictor.load(trained).model.trainable_weights
    assert len(saved) == len(average)
    for variable, expected in zip(saved, average, strict=True):
        np.testing.assert_allclose(variable.numpy(), expected, atol=1e-5)
    assert not np.allclose(saved[0].numpy(), steps[-1][0])  # not simply the last step's weights
