"""The tutorial's architecture stays selectable, trains, and decodes the same way batched and per token."""

import json

from issue_titles.models import ModelConfig, TutorialSeq2Seq, build_model
from issue_titles.predictor import TitlePredictor
from tests.stages.conftest import run_stages
from tests.stages.graph_reference import reference_titles


def test_tutorial_model_has_the_tutorial_layers():
    model = build_model(ModelConfig("tutorial", 8000, 4500, 70, 12, 300, 300))
    assert isinstance(model, TutorialSeq2Seq)
    assert model.encoder_gru.units == 300 and model.decoder_gru.units == 300
    assert model.body_embedding.output_dim == 300 and model.output_dense.units == 4500
    assert model.output_dense.activation.__name__ == "softmax"


def test_tutorial_architecture_trains_and_decodes(chain, tmp_path):
    output = tmp_path / "tutorial"
    code = run_stages("train", "--input", chain["pre_process"], "--output", output, "--architecture", "tutorial",
                      "--epochs", "2", "--batch-size", "64", "--embedding-dim", "16", "--hidden-dim", "16")  # fmt: skip
    assert code == 0
    info = json.loads((output / "model.json").read_text())
    assert info["architecture"] == "tutorial" and info["training"]["epochs_run"] == 2
    predictor = TitlePredictor.load(output)
    bodies = ["the helm chart fails to render", "add a flag for the timeout", "Ünïcödé 😀"]
    assert predictor.predict(bodies) == reference_titles(predictor, bodies)
