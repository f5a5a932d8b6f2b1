"""Data as datums (issue 32): rows assigned by a stable hash, duplicates across files kept once, the vocabulary
kept byte for byte below the drift threshold, train updating its previous model or refusing a warm start."""

from __future__ import annotations

import contextlib
import io
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
from tests.tiny_model import tiny_issues

TEXT = TextConfig(body_vocab_size=120, body_length=24, title_vocab_size=60, title_length=8)
TRAIN = TrainSettings(
    epochs=2, batch_size=16, embedding_dim=16, hidden_dim=16, dropout=0.0, learning_rate=0.01, verbose=0
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


def misfit_previous(work: Path) -> Path:
    """A previous model record that `decide` takes for an update of `work`'s training (this vocabulary, these
    settings, a full training before it; no rows recorded as fitted, so every row is new) but whose weights file
    holds other shapes: the same model with a wider hidden layer, built, not trained (what the weights hold does not
    matter to a refusal by shape). The refusal test fails if `decide` stops taking it for an update."""
    from issue_titles.contract import BODY_VOCAB, MODEL_INFO, TITLE_VOCAB, WEIGHTS_FILE
    from issue_titles.incremental import LINEAGE, fingerprint
    from issue_titles.jsonio import read_vocabulary, write_json
    from issue_titles.models import ModelConfig, build_model
    from issue_titles.vocabulary import vocab_dir

    previous = work / "previous"
    previous.mkdir()
    for name in (BODY_VOCAB, TITLE_VOCAB):
        shutil.copyfile(vocab_dir(work / "vocabulary") / name, previous / name)
    write_json(previous / MODEL_INFO, {"validation_row_keys": []})
    write_json(previous / LINEAGE, {"mode": "full", "settings": fingerprint(TRAIN)})
    write_json(previous / TRAINED_KEYS, [])
    trained = TRAIN.resolved()
    wider = ModelConfig(trained.architecture, len(read_vocabulary(previous / BODY_VOCAB)),
                        len(read_vocabulary(previous / TITLE_VOCAB)), TEXT.body_length, TEXT.title_length,
                        trained.embedding_dim, trained.hidden_dim + 8, trained.dropout)  # fmt: skip
    build_model(wider).save_weights(previous / WEIGHTS_FILE)
    return previous


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory) -> tuple[Path, dict, str]:
    """split -> vocabulary -> encode -> a full training on 60 synthetic rows in one file: (work folder, what
    run_train_incremental returned, what it printed on stderr). The module's one full training, so it is also the
    refusal test's: asked to warm-start from `misfit_previous`, train refuses those weights and falls back to the
    full training the other tests read (a full training is the same whichever reason led to it; training the same
    model a second time only for the refusal cost a whole training)."""
    work = tmp_path_factory.mktemp("chain")
    (work / "raw").mkdir()
    write_issues(work / "raw" / "a.csv", tiny_issues(80)[:60])
    run_split_shards(work / "raw", work / "split", ShardSettings(test_fraction=0.2))
    run_vocabulary(work / "split", work / "vocabulary", TEXT)
    run_encode_shards(work / "split", work / "vocabulary", work / "pre")
    previous = misfit_previous(work)
    with contextlib.redirect_stderr(io.StringIO()) as err:
        info = run_train_incremental(work / "pre", work / "vocabulary", work / "train", TRAIN, UpdateSettings(),
                                     previous_dir=previous)  # fmt: skip
    return work, info, err.getvalue()


@pytest.fixture(scope="module")
def chain(chain_run: tuple[Path, dict, str]) -> Path:
    """The work folder of `chain_run` (raw/, split/, vocabulary/, pre/, train/: a full training). Read-only."""
    return chain_run[0]


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
    chain: Path, tmp_path: Path
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
    chain_run: tuple[Path, dict, str],
) -> None:
    _, info, err = chain_run  # warm-started from `misfit_previous`: a record of the same kind, weights of other shapes

    assert "warm start refused: the previous model's weights do not fit this model" in err
    assert "falling back to a full training" in err
    assert info["lineage"]["mode"] == "full" and "warm start refused" in info["lineage"]["reason"]
    assert info["training"]["epochs_run"] == 2 and "started_from" not in info["lineage"]
