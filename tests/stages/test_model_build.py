"""`build_model` creates every weight with a two-token pass (Seq2SeqModel.build_weights): the same weights, shapes
and initial values as a pass over the full body and title lengths, which every model built or loaded used to pay."""

import keras
import numpy as np
import pytest
from keras import ops

from issue_titles.model_config import ModelConfig
from issue_titles.models import Seq2SeqModel, build_model

CONFIGS = {
    "pointer_generator": ModelConfig("pointer_generator", 120, 60, 24, 8, 16, 16, trigrams_per_token=4,
                                     trigram_buckets=500),
    "transformer": ModelConfig("pointer_generator", 120, 60, 24, 8, 16, 32, 0.2, encoder="transformer",
                               attention_heads=2),
    "tutorial": ModelConfig("tutorial", 120, 60, 24, 8, 16, 16),
}  # fmt: skip


def full_length_pass(model: Seq2SeqModel) -> None:
    """What build_weights ran before: one batch of the configured lengths through the training and decoding paths."""
    config = model.config
    body = ops.ones((1, config.body_length), dtype="int32")
    title = ops.ones((1, config.title_length - 1), dtype="int32")
    grams = ops.ones((1, config.body_length, config.trigrams_per_token), dtype="int32")
    model({"body": body, "body_copy": body, "body_grams": grams, "decoder_input": title, "target": title})


def initial_weights(config: ModelConfig) -> list[tuple[tuple, np.ndarray]]:
    keras.utils.set_random_seed(7)
    return [(tuple(weight.shape), weight.numpy()) for weight in build_model(config).weights]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_two_token_build_creates_the_weights_a_full_length_pass_creates(name: str, monkeypatch) -> None:
    two_token = initial_weights(CONFIGS[name])
    monkeypatch.setattr(Seq2SeqModel, "build_weights", full_length_pass)
    full_length = initial_weights(CONFIGS[name])

    assert [shape for shape, _ in two_token] == [shape for shape, _ in full_length]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(two_token, full_length, strict=True))
