"""The reference loop (`issue_titles.reference_decoding.predict_reference`) with the model's calls compiled.

The oracle stays the same loop: one `encode` per body, one `step` per token and hypothesis, the selection in numpy.
Only how each model call runs changes: eagerly, Keras runs the bidirectional GRU's time loop op by op in Python,
which made the oracle take ~90% of a comparison test's CPU time (10 s for 18 bodies on the tiny model); traced
once per model (batch of one body, one hypothesis), each call runs the same ops in a graph. The titles the tests
compare must be equal, id for id, so a graph that rounded differently from the compiled decoders would fail the
comparison, not pass it.
"""

from collections.abc import Callable, Sequence
from typing import Any

from issue_titles.predictor import TitlePredictor
from issue_titles.reference_decoding import predict_reference

# model id -> (model, compiled encode, compiled step): traced once per model per test run, shared by every test
# and decoding option (a different copy bias is a Python float, so it gets a trace of its own).
_COMPILED: dict[int, tuple[Any, Callable, Callable]] = {}


class _CompiledCalls:
    """The model as the reference loop sees it: `encode` and `step`, each a tf.function of the model's own."""

    def __init__(self, model: Any) -> None:
        import tensorflow as tf

        if id(model) not in _COMPILED:

            def encode(body, body_copy, body_grams):
                return model.encode(body, body_copy, body_grams, training=False)

            def step(tokens, memory, state, copy_bias):
                return model.step(tokens, memory, state, copy_bias)

            _COMPILED[id(model)] = (model, tf.function(encode), tf.function(step))
        _, self._encode, self.step = _COMPILED[id(model)]
        self.config = model.config

    def encode(self, body, body_copy, body_grams, training: bool = False):
        assert not training
        return self._encode(body, body_copy, body_grams)


class _ReferencePredictor:
    """What `predict_reference` reads of a predictor: its encoder, rules, beam width and (compiled) model."""

    def __init__(self, predictor: TitlePredictor) -> None:
        self.encoder = predictor.encoder
        self.rules = predictor.rules
        self.beam_width = predictor.beam_width
        self.model = _CompiledCalls(predictor.model)


def reference_titles(predictor: TitlePredictor, bodies: Sequence[str]) -> list[str]:
    """`predict_reference(predictor, bodies)`, each model call compiled (see the module docstring)."""
    return predict_reference(_ReferencePredictor(predictor), bodies)  # type: ignore[arg-type]
