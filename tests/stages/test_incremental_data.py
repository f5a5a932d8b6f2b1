"""Data as datums (issue 32): rows assigned by a stable hash, duplicates across files kept once, the vocabulary
kept byte for byte below the drift threshold, train updating its previous model or refusing a warm start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from issue_titles.csvio import Issue, ReadReport, read_issue_file, write_issues
from issue_titles.encode import run_encode_shards
from issue_titles.incremental import LINEAGE, TRAINED_KEYS, UpdateSettings, decide, run_train_incremental
from issue_titles.jsonio import read_json
from issue_titles.shards import ShardSettings, merge_side, run_split_shards, unit_hash
from issue_titles.text import TextConfig
from issue_titles.train import TrainSettings
from issue_titles.vocabulary import run_vocabulary
from tests.stages.conftest import graph_rewrites_off
from tests.tiny_model import tiny_issues

TEXT = TextConfig(body_vocab_size=120, body_length=24, title_vocab_size=60, title_length=8)
# The tutorial architecture: what is guarded (the lineage, which rows are fitted, a warm start that loads the previous
# weights or is refused by their shapes, the fallback to a full training) is run_train_incremental's and the same for
# either architecture (both load and save weights the same way), and its trainings trace in about half the time.
TRAIN = TrainSettings(
    architecture="tutorial",
    epochs=2,
    batch_size=16,
    embedding_dim=16,
    hidden_dim=16,
    dropout=0.0,
    learning_rate=0.01,
    verbose=0,
)


def sides(split: Path) -> dict[str, dict[str, str]]:
    """shard -> {issue_url: side} as written."""
    out: dict[str, dict[str, str]] = {}
    for shard in sorted(p for p in split.iterdir() if p.is_dir()):
        for side in ("train", "test", "heldout"):
            for issue in read_issue_file(shard / f"{side}.csv", ReadReport()):
                out.setdefault(shard.name, {})[issue.issue_url] = side
    return out


def test_adding_a_file_never_moves_an_existing_row(tmp_path: Path) -> None:
    issues = tiny_issues(120)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_issues(raw / "day1.csv", issues[:80])
    run_split_shards(raw, tmp_path / "before", ShardSettings(test_fraction=0.25))
    write_issues(raw / "day2.csv", issues[80:])
    run_split_shards(raw, tmp_path / "after", ShardSettings(test_fraction=0.25))

    for name in ("train.csv", "test.csv", "heldout.csv"):  # the old shard is byte for byte the same datum output
        assert (tmp_path / "before/day1.csv" / name).read_bytes() == (tmp_path / "after/day1.csv" / name).read_bytes()
    before, after = sides(tmp_path / "before"), sides(tmp_path / "after")
    assert after["day1.csv"] == before["day1.csv"]
    assert set(after["day1.csv"].values()) == {"train", "test"}
    assert set(after["day2.csv"]) == {issue.issue_url for issue in issues[80:]}


def test_a_seeded_sample_is_a_per_row_choice_that_other_files_do_not_change(tmp_path: Path) -> None:
    issues = tiny_issues(200)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_issues(raw / "a.csv", issues[:100])
    settings = ShardSettings(test_fraction=0.2, sample_fraction=0.5, seed=3)
    run_split_shards(raw, tmp_path / "one", settings)
    write_issues(raw / "b.csv", issues[100:])
    run_split_shards(raw, tmp_path / "two", settings)

    kept = set(sides(tmp_path / "one")["a.csv"])
    assert kept == set(sides(tmp_path / "two")["a.csv"])
    assert kept == {i.issue_url for i in issues[:100] if unit_hash(i.issue_url, "sample", 3) < 0.5}
    assert 30 < len(kept) < 70


def test_rows_repeated_within_and_across_files_are_counted_and_kept_once(tmp_path: Path) -> None:
    issues = tiny_issues(60)
    raw = tmp_path / "raw"
    raw.mkdir()
    write_issues(raw / "a.csv", issues[:40] + issues[:3])  # 3 repeated within the file
    write_issues(raw / "b.csv", issues[30:60])  # 10 rows already in a.csv
    report = run_split_shards(raw, tmp_path / "split", ShardSettings(test_fraction=0.2))

    assert report["repeated_in_file"] == 3
    merged = {side: merge_side(tmp_path / "split", side) for side in ("train", "test")}
    assert sum(m.repeated_across_files for m in merged.values()) == 10
    urls = [issue.issue_url for m in merged.values() for issue in m.issues]
    assert sorted(urls) == sorted({issue.issue_url for issue in issues})  # every row once


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Path:
    """split -> vocabulary -> encode -> a full training on 60 synthetic rows in one file."""
    work = tmp_path_factory.mktemp("chain")
    (work / "raw").mkdir()
    write_issues(work / "raw" / "a.csv", tiny_issues(80)[:60])
    run_split_shards(work / "raw", work / "split", ShardSettings(test_fraction=0.2))
    run_vocabulary(work / "split", work / "vocabulary", TEXT)
    run_encode_shards(work / "split", work / "vocabulary", work / "pre")
    with graph_rewrites_off():
        run_train_incremental(work / "pre", work / "vocabulary", work / "train", TRAIN, UpdateSettings())
    return work


def add_file_and_refit(chain: Path, target: Path, rows, threshold: float) -> dict:
    shutil.copytree(chain / "raw", target / "raw")
    write_issues(target / "raw" / "b.csv", rows)
    run_split_shards(target / "raw", target / "split", ShardSettings(test_fraction=0.2))
    return run_vocabulary(
        target / "split", target / "vocabulary", TEXT, previous=chain / "vocabulary", threshold=threshold
    )


def test_below_the_drift_threshold_the_vocabulary_stays_byte_identical(chain: Path, tmp_path: Path) -> None:
    report = add_file_and_refit(chain, tmp_path, tiny_issues(80)[60:], threshold=0.5)

    assert report["kept_previous"] and max(report["drift"].values()) <= 0.5
    for name in ("body_vocab.json", "title_vocab.json", "text_config.json", "requested.json"):
        assert (tmp_path / "vocabulary/vocab" / name).read_bytes() == (chain / "vocabulary/vocab" / name).read_bytes()


def test_above_the_drift_threshold_a_fresh_vocabulary_forces_a_full_retrain(chain: Path, tmp_path: Path) -> None:
    unrelated = [
        Issue(
            f"https://example.com/other/{i}",
            f"bump lodash to {i}.0",
            f"Bumps lodash from {i} to {i + 1}. Release notes, changelog, commits.",
        )
        for i in range(40)
    ]
    report = add_file_and_refit(chain, tmp_path, unrelated, threshold=0.005)
    assert not report["kept_previous"] and max(report["drift"].values()) > 0.005
    run_encode_shards(tmp_path / "split", tmp_path / "vocabulary", tmp_path / "pre")

    from issue_titles.incremental import assemble

    assemble(tmp_path / "pre", tmp_path / "vocabulary", tmp_path / "flat")
    mode, reason = decide(chain / "train", tmp_path / "flat", TRAIN, UpdateSettings())
    assert mode == "full" and "vocabulary changed" in reason


def test_an_unchanged_vocabulary_warm_starts_from_the_previous_model_and_records_the_chain(
    chain: Path, tmp_path: Path, without_graph_rewrites: None
) -> None:
    add_file_and_refit(chain, tmp_path, tiny_issues(80)[60:], threshold=0.5)
    run_encode_shards(tmp_path / "split", tmp_path / "vocabulary", tmp_path / "pre")
    info = run_train_incremental(
        tmp_path / "pre",
        tmp_path / "vocabulary",
        tmp_path / "train",
        TRAIN,
        UpdateSettings(min_replay=10),
        previous_dir=chain / "train",
    )

    lineage = read_json(tmp_path / "train" / LINEAGE)
    assert lineage["mode"] == "update" and info["lineage"] == lineage
    assert lineage["new_rows"] > 0 and lineage["replay_rows"] >= 10
    assert lineage["chain"] == [lineage["started_from"]] and lineage["started_from"]["mode"] == "full"
    fitted = set(read_json(tmp_path / "train" / TRAINED_KEYS))
    validation = set(read_json(tmp_path / "train" / "model.json")["validation_row_keys"])
    assert not fitted & validation and len(fitted | validation) == lineage["rows"]  # validation rows never fitted
    assert set(read_json(chain / "train" / "model.json")["validation_row_keys"]) <= validation
    assert info["training"]["epochs_run"] == 1


def test_a_warm_start_whose_shapes_do_not_match_is_refused_and_falls_back_to_a_full_training(
    chain: Path, tmp_path: Path, without_graph_rewrites: None, capsys
) -> None:
    from issue_titles.models import ModelConfig, build_model

    previous = tmp_path / "previous"
    shutil.copytree(chain / "train", previous)
    # The same model with a wider hidden layer: its weights file is what a training of it would save, other shapes
    # (built, not trained: what the weights hold does not matter to a refusal by shape).
    config = read_json(chain / "train" / "model.json")["config"]
    build_model(ModelConfig.from_dict(config | {"hidden_dim": 24})).save_weights(tmp_path / "wider.weights.h5")
    shutil.copyfile(tmp_path / "wider.weights.h5", previous / "model.weights.h5")  # same record, other shapes

    info = run_train_incremental(
        chain / "pre", chain / "vocabulary", tmp_path / "train", TRAIN, UpdateSettings(), previous_dir=previous
    )

    err = capsys.readouterr().err
    assert "warm start refused: the previous model's weights do not fit this model" in err
    assert "falling back to a full training" in err
    assert info["lineage"]["mode"] == "full" and "warm start refused" in info["lineage"]["reason"]
    assert info["training"]["epochs_run"] == 2 and "started_from" not in info["lineage"]
