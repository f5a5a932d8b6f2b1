"""After `max_updates` updates in a row the next training is a full one (issue_titles.incremental.decide): successive
updates drift slowly down (bench/results.md), and a full training resets the chain. Files only: nothing trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from issue_titles.contract import BODY_VOCAB, MODEL_INFO, TITLE_VOCAB
from issue_titles.errors import StageError
from issue_titles.incremental import LINEAGE, TRAINED_KEYS, UpdateSettings, decide, fingerprint
from issue_titles.jsonio import write_json
from issue_titles.train import TrainSettings

SETTINGS = TrainSettings(epochs=2, batch_size=16, embedding_dim=16, hidden_dim=16)


def vocabularies(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BODY_VOCAB).write_text('["[PAD]", "fix"]')
    (folder / TITLE_VOCAB).write_text('["[PAD]", "bug"]')
    return folder


def previous_model(folder: Path, updates_since_full: int | None) -> Path:
    """A train output with the same vocabulary and settings, `updates_since_full` updates after its full training."""
    vocabularies(folder)
    write_json(folder / MODEL_INFO, {})
    write_json(folder / TRAINED_KEYS, ["a", "b"])
    lineage: dict = {"mode": "full" if updates_since_full is None else "update", "settings": fingerprint(SETTINGS)}
    if updates_since_full is not None:
        lineage["updates_since_full"] = updates_since_full
    write_json(folder / LINEAGE, lineage)
    return folder


@pytest.mark.parametrize("updates_since_full", [None, 1, 9])
def test_below_the_limit_the_previous_model_is_updated(tmp_path: Path, updates_since_full: int | None) -> None:
    previous = previous_model(tmp_path / "previous", updates_since_full)

    mode, _ = decide(previous, vocabularies(tmp_path / "flat"), SETTINGS, UpdateSettings(max_updates=10))

    assert mode == "update"


def test_at_the_limit_the_next_training_is_a_full_one_and_says_why(tmp_path: Path) -> None:
    previous = previous_model(tmp_path / "previous", 10)

    mode, why = decide(previous, vocabularies(tmp_path / "flat"), SETTINGS, UpdateSettings(max_updates=10))

    assert mode == "full"
    assert why == "10 updates in a row since the last full training (--max-updates 10)"


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(StageError, match="--max-updates >= 1"):
        UpdateSettings(max_updates=0)
