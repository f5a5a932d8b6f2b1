"""The tutorial's architecture stays selectable, trains, and decodes the same way batched and per token."""

import json

from issue_titles.models import ModelConfig, TutorialSeq2Seq, build_model
from tests.stages.conftest import TUTORIAL_EPOCHS
from tests.stages.graph_reference import reference_titles


def test_tutorial_model_has_the_tutorial_layers():
    model = build_model(ModelConfig("tutorial", 8000, 4500, 70, 12, 300, 300))
    assert isinstance(model, TutorialSeq2Seq)
    assert model.encoder_gru.units == 300 and model.decoder_gru.units == 300
    assert model.body_embedding.output_dim == 300 and model.output_dense.units == 4500
    assert model.output_dense.activation.__name__ == "softmax"


def test_tutorial_architecture_trains_and_decodes(tutorial_model, tutorial_predictor):
    """`stages train --architecture tutorial` trains it: the run's `tutorial_model` is that command's output (the
    fixture asserts its exit code 0), so the suite trains the tutorial's architecture once, not again here."""
    info = json.loads((tutorial_model / "model.json").read_text())
    assert info["architecture"] == "tutorial" and info["training"]["epochs_run"] == TUTORIAL_EPOCHS
    predictor = tutorial_predictor  # TitlePredictor.load(tutorial_model), shared by the session
    assert predictor.source == tutorial_model and predictor.architecture == "tutorial"
    bodies = ["the helm chart fails to render", "add a flag for the timeout", "Ünïcödé 😀"]
    assert predictor.predict(bodies) == reference_titles(predictor, bodies)
