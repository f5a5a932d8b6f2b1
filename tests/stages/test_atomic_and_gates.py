"""Atomic outputs, the quality gate, and tamper detection."""

import json
import re
import shutil
from pathlib import Path

import pytest

from issue_titles.atomic import MARKER, atomic_output_dir, marker_content
from issue_titles.build import baseline_label, check_quality_gate
from issue_titles.errors import QualityGateError, TamperedBundleError
from issue_titles.predictor import TitlePredictor
from tests.stages.conftest import run_stages


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".tmp-" in path.name or ".old-" in path.name)


def test_a_failing_step_leaves_no_output_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output_dir(tmp_path / "out", step="split") as staging:
            (staging / "half.csv").write_text("written before the failure")
            raise RuntimeError("disk full")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def previous_output(folder: Path, step: str = "split") -> None:
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps(marker_content(step)))


def test_a_failing_step_keeps_the_previous_output(tmp_path):
    previous_output(tmp_path / "out")
    (tmp_path / "out" / "train.csv").write_text("previous result")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(tmp_path / "out", step="split") as staging:
            (staging / "train.csv").write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "out" / "train.csv").read_text() == "previous result"
    assert leftovers(tmp_path) == []


def test_a_successful_step_fills_an_existing_empty_output(tmp_path):
    (tmp_path / "out").mkdir()  # like Pachyderm's /pfs/out
    with atomic_output_dir(tmp_path / "out", step="split") as staging:
        (staging / "result.json").write_text("{}")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [MARKER, "result.json"]
    assert leftovers(tmp_path) == []


def test_a_successful_step_replaces_its_previous_output_whole(tmp_path):
    previous_output(tmp_path / "out")
    (tmp_path / "out" / "stale.csv").write_text("old")
    with atomic_output_dir(tmp_path / "out", step="split") as staging:
        (staging / "fresh.csv").write_text("new")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [MARKER, "fresh.csv"]


def gate_numbers(metrics: dict) -> str:
    return (
        f"model ROUGE-L {metrics['rouge_l']:.4f}, {baseline_label(metrics['lead_baseline'])} "
        f"{metrics['lead_baseline']['rouge_l']:.4f} on the {metrics['test_rows']} rows of the test split"
    )


@pytest.mark.usefixtures("evaluated_once")  # the two gate tests build one model on one split: one evaluation
def test_quality_gate_refuses_a_weak_model_and_writes_nothing(chain, tmp_path, capsys):
    metrics = json.loads((chain["evaluate"] / "metrics.json").read_text())
    code = run_stages("build", "--input", chain["train"], "--input", chain["split"], "--output", tmp_path / "bundle",
                      "--min-rouge-l", "0.99", "--allow-below-baseline")  # fmt: skip
    assert code == 3
    assert capsys.readouterr().err.strip() == (
        f"stages build: error: refusing to build: below the quality gate --min-rouge-l 0.9900 ({gate_numbers(metrics)})"
    )
    assert not (tmp_path / "bundle").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.usefixtures("evaluated_once")
def test_build_refuses_by_default_a_model_that_does_not_beat_the_baseline_naming_both_numbers(chain, tmp_path, capsys):
    metrics = json.loads((chain["evaluate"] / "metrics.json").read_text())
    assert metrics["rouge_l"] <= metrics["lead_baseline"]["rouge_l"], "the chain's tiny model is expected to lose"
    code = run_stages("build", "--input", chain["train"], "--input", chain["split"], "--output", tmp_path / "bundle")
    assert code == 3
    assert capsys.readouterr().err.strip() == (
        f"stages build: error: refusing to build: the model does not beat the best extractive baseline "
        f"({gate_numbers(metrics)}); train on more rows or for more epochs, or pass --allow-below-baseline "
        "to build it anyway"
    )
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(
    ("model", "baseline", "refused"), [(0.30, 0.31, True), (0.31, 0.31, True), (0.32, 0.31, False)]
)
def test_the_baseline_gate_passes_only_a_model_strictly_above_the_baseline(model, baseline, refused):
    metrics = {"rouge_l": model, "lead_baseline": {"rouge_l": baseline, "words": 7}, "test_rows": 100}
    if refused:
        with pytest.raises(QualityGateError, match=f"model ROUGE-L {model:.4f}, lead-words baseline .* {baseline:.4f}"):
            check_quality_gate(metrics)
    else:
        check_quality_gate(metrics)
    check_quality_gate(metrics, beat_baseline=False)  # lifted: the absolute floor (0 by default) alone decides


def test_build_needs_a_model_and_a_test_split(chain, tmp_path, capsys):
    code = run_stages("build", "--input", chain["split"], "--output", tmp_path / "bundle")
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"stages build: error: no input holds model.json (the output of `stages train`); inputs: {chain['split']}"
    )


def test_changed_weights_are_detected_on_load(chain, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(chain["build"], bundle)
    weights = bytearray((bundle / "model.weights.h5").read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # one flipped byte in the middle of the weights
    (bundle / "model.weights.h5").write_bytes(bytes(weights))
    with pytest.raises(TamperedBundleError, match=r"model\.weights\.h5: checksum mismatch: provenance\.json records"):
        TitlePredictor.load(bundle)


def test_changed_vocabulary_is_detected_on_load(chain, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(chain["build"], bundle)
    vocabulary = json.loads((bundle / "title_vocab.json").read_text())
    vocabulary[5], vocabulary[6] = vocabulary[6], vocabulary[5]
    (bundle / "title_vocab.json").write_text(json.dumps(vocabulary))
    with pytest.raises(TamperedBundleError) as error:
        TitlePredictor.load(bundle)
    assert str(error.value).startswith(f"{bundle / 'title_vocab.json'}: checksum mismatch")
    assert "the bundle was changed after `stages build`" in str(error.value)


def test_missing_bundle_file_is_detected_on_load(chain, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(chain["build"], bundle)
    (bundle / "body_vocab.json").unlink()
    with pytest.raises(TamperedBundleError, match=re.escape("bundle file listed in provenance.json is missing")):
        TitlePredictor.load(bundle)


def test_tampered_bundle_is_refused_by_the_predict_command(chain, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(chain["build"], bundle)
    (bundle / "model.json").write_text((bundle / "model.json").read_text() + " ")
    (tmp_path / "in.csv").write_text("body\nsomething broke\n")
    code = run_stages("predict", "--model", bundle, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv")
    assert code == 4
    assert (
        capsys.readouterr().err.strip().startswith(f"stages predict: error: {bundle / 'model.json'}: checksum mismatch")
    )
    assert not (tmp_path / "out.csv").exists()
