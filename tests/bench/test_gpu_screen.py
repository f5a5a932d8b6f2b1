"""The GPU screen's two ends: export hands the port what `stages` trains on; score reads its ids back as titles."""

import csv
import json
import sys

import numpy as np
import pytest

from bench.gpu_screen import GRAM_BUCKETS, GRAMS_PER_TOKEN, _encoder, export, score, trigram_ids
from issue_titles.evaluate import read_test_split
from issue_titles.metrics import rouge_l_scores
from tests.stages.conftest import first_rows, run_stages

HELDOUT = "acme/widgets"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A split with a held-out repository (the data set's last 60 of 240 rows moved to acme/widgets) and its
    pre_process output."""
    root = tmp_path_factory.mktemp("screen")
    raw = root / "raw"
    raw.mkdir()
    first_rows(root / "first.csv", 240)
    csv.field_size_limit(sys.maxsize)
    with open(root / "first.csv", encoding="utf-8", newline="") as source:
        rows = list(csv.DictReader(source))
    for number, row in enumerate(rows[180:]):
        row["issue_url"] = f"https://github.com/{HELDOUT}/pull/{number + 1}"
    with open(raw / "issues.csv", "w", encoding="utf-8", newline="") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    split, pre_process = root / "split", root / "pre_process"
    assert run_stages("split", "--input", raw, "--output", split, "--heldout-repos", HELDOUT) == 0
    assert run_stages("pre_process", "--input", split, "--output", pre_process, "--body-vocab-size", "800",
                      "--title-vocab-size", "300") == 0  # fmt: skip
    exported = root / "exported"
    export(split, pre_process, exported)
    return split, pre_process, exported


def test_trigram_ids_are_stable_bounded_and_shared_by_related_identifiers():
    ids = trigram_ids("qlinearmatmul")
    assert ids == trigram_ids("qlinearmatmul")
    assert len(ids) == GRAMS_PER_TOKEN and all(1 <= value < GRAM_BUCKETS for value in ids)
    assert set(trigram_ids("matmul")) & set(trigram_ids("qlinearmatmul")[-3:])  # "tmu", "mul", "ul>"


def test_export_holds_the_training_arrays_and_every_split_body(prepared):
    split, pre_process, exported = prepared
    data, grams = np.load(exported / "data.npz"), np.load(exported / "ngrams.npz")
    assert np.array_equal(data["train_body"], np.load(pre_process / "train_body.npy"))
    assert np.array_equal(data["train_title_copy"], np.load(pre_process / "train_title_copy.npy"))
    for name in ("test", "heldout"):
        rows = len(read_test_split(split, f"{name}.csv"))
        assert rows and data[f"{name}_body"].shape == (rows, 60) == grams[f"{name}_gid"].shape
    assert grams["gram_table"].shape[1] == GRAMS_PER_TOKEN and not grams["gram_table"][0].any()  # id 0: padding


def test_score_reads_ids_back_as_titles_in_the_split_order(prepared, tmp_path):
    split, pre_process, exported = prepared
    data = np.load(exported / "data.npz")
    title_vocab, _, end, _ = (int(x) for x in data["meta"])
    result = {}
    for name in ("test", "heldout"):  # every title: the body's first three words, as copy ids
        ids = np.full((len(data[f"{name}_body"]), 11), end, dtype=np.int16)
        ids[:, :3] = title_vocab + np.arange(3)
        result[name] = ids
    info = {"params": 1000, "seconds": 1.0, "history": [[1, 5.0, 4.5, 1.0], [2, 4.0, 4.2, 2.0]]}
    np.savez(tmp_path / "lead3.npz", **result, info=np.array(json.dumps(info)))
    baselines = tmp_path / "metrics.json"
    baselines.write_text(json.dumps({"heldout": {"best_baseline": {"rouge_l": 0.1},
                                                 "repositories": {HELDOUT: {"best_baseline": {"rouge_l": 0.05}}}}}))

    (row,) = score(split, pre_process, baselines, [tmp_path / "lead3.npz"])

    heldout = read_test_split(split, "heldout.csv")
    tokens = _encoder(pre_process).encode_bodies([issue.body for issue in heldout])["body_tokens"]
    lead3 = [" ".join(word.decode() for word in words[:3] if word) for words in tokens]
    expected = np.mean(rouge_l_scores(lead3, [issue.issue_title for issue in heldout]))
    assert row["heldout"] == pytest.approx(expected, abs=1e-4) and row["heldout"] > 0
    assert row["margin"] == pytest.approx(row["heldout"] - 0.1, abs=1e-4)
    assert row["min_repository_margin"] == pytest.approx(row["heldout"] - 0.05, abs=1e-4)
    assert row["heldout_words"] <= 3 and row["epochs"] == 2 and row["val_loss"] == 4.2
