"""The real chain on a subset of the vendored data: the loss falls and the result is a servable, traceable bundle."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from issue_titles.predictor import TitlePredictor
from issue_titles.provenance import sha256_file
from tests.stages.graph_reference import reference_titles

BODIES = [
    "When I run helm install the chart fails with a nil pointer in renderYamlToDirectory",
    "Add support for yaml/v2.ConfigFile in the kubernetes provider. Fixes #3284",
    "",
    "Unicode: naïve café — 😀 emoji and 中文 text",
    "```python\nprint('code block')\n```\nThe build crashes",
    "word " * 5000,
]


@pytest.fixture(scope="module")
def served(chain) -> TitlePredictor:
    """The chain's bundle, loaded (and its decoder traced) once for the tests that only decode with it."""
    return TitlePredictor.load(chain["build"])


def test_split_keeps_every_row_accounted_for(chain):
    report = json.loads((chain["split"] / "report.json").read_text())
    assert report["rows_read"] == report["rows_kept"] + sum(report["skipped"].values())
    assert report["train_rows"] + report["test_rows"] == report["rows_kept"]
    with open(chain["split"] / "test.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["test_rows"] and list(rows[0]) == ["issue_url", "issue_title", "body"]


def test_vocabularies_are_plain_json_token_lists(chain):
    for name in ("body_vocab.json", "title_vocab.json"):
        vocabulary = json.loads((chain["pre_process"] / name).read_text(encoding="utf-8"))
        assert isinstance(vocabulary, list) and all(isinstance(token, str) for token in vocabulary)
        assert vocabulary[:2] == ["", "[UNK]"]
    assert {"_start_", "_end_"} <= set(json.loads((chain["pre_process"] / "title_vocab.json").read_text()))
    assert not list(chain["pre_process"].glob("*.pkl")) and not list(chain["pre_process"].glob("*.dpkl"))


def test_encoded_arrays_load_without_pickle(chain):
    body = np.load(chain["pre_process"] / "train_body.npy", allow_pickle=False)
    title = np.load(chain["pre_process"] / "train_title.npy", allow_pickle=False)
    assert body.dtype == np.int32 and title.dtype == np.int32
    assert body.shape[1] == 40 and title.shape[1] == 12 and body.shape[0] == title.shape[0]


def test_training_loss_falls(chain):
    with open(chain["train"] / "history.csv", newline="") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) >= 2
    assert losses[-1] < losses[0]
    assert (chain["train"] / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_reports_model_and_every_extractive_baseline(chain):
    metrics = json.loads((chain["evaluate"] / "metrics.json").read_text())
    for system in ("model", "lead_baseline"):
        assert 0.0 <= metrics[system]["rouge_l"] <= 1.0
        assert 0.0 <= metrics[system]["bleu"] <= 100.0
    assert set(metrics["baselines"]) == {"lead_k", "first_sentence", "lead_k_clean", "first_sentence_clean"}
    best = max(metrics["baselines"].values(), key=lambda scores: scores["rouge_l"])
    assert metrics["lead_baseline"]["rouge_l"] == best["rouge_l"]  # the gate compares with the strongest
    assert metrics["lead_words"]["chosen_on"] == "train.csv"
    assert 3 <= metrics["lead_words"]["k"] <= 15


def test_bundle_is_servable(served):
    predictor = served
    titles = predictor.predict(BODIES)
    assert len(titles) == len(BODIES)
    assert all(isinstance(title, str) and title.strip() for title in titles)


def test_bundle_has_serving_files(chain):
    bundle = chain["build"]
    dockerfile = (bundle / "Dockerfile").read_text()
    assert dockerfile.splitlines()[1] == "FROM registry.example.com/issue-titles/stages:test"
    assert (
        'CMD ["serve", "--model", "/model", "--host", "0.0.0.0", "--port", "9000", "--metrics-port", "8082"]'
        in dockerfile
    )
    assert "USER 10001:10001" in dockerfile
    settings = json.loads((bundle / "model-settings.json").read_text())
    assert settings["name"] == "issue-summarization"
    assert settings["implementation"] == "issue_titles.serving.runtime.IssueTitleRuntime"
    assert settings["max_batch_size"] > 1  # adaptive batching on


def test_provenance_records_checksums_of_every_bundle_file(chain):
    bundle = chain["build"]
    provenance = json.loads((bundle / "provenance.json").read_text())
    # tensorboard/decoding/ is a folder: only files are listed
    files = sorted(
        path.relative_to(bundle).as_posix()
        for path in bundle.rglob("*")
        if path.is_file() and path.name != "provenance.json"
    )
    assert sorted(provenance["files"]) == files
    assert all(provenance["files"][name] == sha256_file(bundle / name) for name in files)
    assert provenance["code"]["package"] == "issue-titles" and len(provenance["code"]["source_sha256"]) == 64
    assert provenance["metrics"]["model"]["rouge_l"] >= 0.0


def test_batched_decoding_gives_the_reference_loop_titles(served, chain):
    predictor = served
    with open(chain["split"] / "test.csv", newline="", encoding="utf-8") as handle:
        bodies = [row["body"] for row in csv.DictReader(handle)][:24] + BODIES
    assert predictor.predict(bodies, chunk_size=7) == reference_titles(predictor, bodies)


def test_predict_keeps_order_and_handles_empty_batch(served):
    predictor = served
    single = [predictor.predict([body])[0] for body in BODIES[:3]]
    assert predictor.predict(BODIES[:3]) == single
    assert predictor.predict([]) == []


def test_predict_command_writes_a_title_per_row(chain, tmp_path):
    from tests.stages.conftest import run_stages

    source = tmp_path / "bodies.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body"])
        writer.writerows([[body] for body in BODIES if body])
    assert run_stages("predict", "--model", chain["build"], "--input", source, "--output", tmp_path / "out.csv") == 0
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["body"] for row in rows] == [body for body in BODIES if body]  # as written, not stripped
    assert all(row["predicted_title"] for row in rows)


@pytest.mark.usefixtures("evaluated_once")
def test_build_records_pachyderm_commits_and_job_id(chain, tmp_path):
    from issue_titles.build import run_build

    env = {
        "PACH_JOB_ID": "a" * 32,
        "train": str(chain["train"]),
        "train_COMMIT": "1" * 32,
        "split": str(chain["split"]),
        "split_COMMIT": "2" * 32,
    }
    provenance = run_build([chain["train"], chain["split"]], tmp_path / "bundle", env=env, beat_baseline=False)
    assert provenance["job_id"] == "a" * 32
    assert provenance["inputs"]["train"]["commit"] == "1" * 32
    assert provenance["inputs"]["split"]["commit"] == "2" * 32


@pytest.mark.usefixtures("evaluated_once")
def test_build_records_absent_commits_as_null(chain, tmp_path):
    from issue_titles.build import run_build

    provenance = run_build([chain["split"], chain["train"]], tmp_path / "bundle", env={}, beat_baseline=False)
    assert provenance["job_id"] is None
    assert all(entry["commit"] is None for entry in provenance["inputs"].values())


def test_tiny_bundle_fixture_is_a_complete_bundle(tiny: Path, tiny_predictor):
    names = {path.name for path in tiny.iterdir()}
    assert {"model.weights.h5", "model.json", "provenance.json", "Dockerfile", "model-settings.json"} <= names
    # `tiny_predictor` is the session's `TitlePredictor.load(tiny)`: loaded, and its decoder traced, once for every
    # module that decodes with it
    assert tiny_predictor.source == tiny
    assert tiny_predictor.predict(["the cache crashes on empty input"])[0]
