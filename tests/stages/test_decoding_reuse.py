"""An updated model's build reuses the decoding choice of the build that bundled the weights it was updated from
(issue_titles.evaluate.inherited_choice): choosing anew decodes the tuning sample once per candidate, most of an
update's build. A full training, other weights, another beam width, a choice that was not made on validation rows,
or MAX_CHOICE_REUSES reuses in a row make the build choose again. Files only: no model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from issue_titles.contract import PROVENANCE, WEIGHTS_FILE
from issue_titles.evaluate import MAX_CHOICE_REUSES, inherited_choice
from issue_titles.jsonio import write_json

WEIGHTS_SHA = "a" * 64


def updated_model(folder: Path, mode: str = "update", weights_sha: str = WEIGHTS_SHA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lineage = {"mode": mode} | ({"started_from": {"weights_sha256": weights_sha}} if mode == "update" else {})
    write_json(folder / "model.json", {"lineage": lineage})
    return folder


def previous_bundle(
    folder: Path, weights_sha: str = WEIGHTS_SHA, beam_width: int = 4, choice: dict | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / PROVENANCE,
        {
            "output_commit": "b41d",
            "files": {WEIGHTS_FILE: weights_sha},
            "decoding": {"beam_width": beam_width, "length_penalty": 2.0, "min_length": 1, "copy_bias": 1.6},
            "decoding_choice": {"chosen_on": "validation rows"} if choice is None else choice,
        },
    )
    return folder


def test_an_update_reuses_the_choice_of_the_build_that_bundled_its_starting_weights(tmp_path: Path) -> None:
    choice, why_not = inherited_choice(updated_model(tmp_path / "model"), previous_bundle(tmp_path / "before"), 4)

    assert why_not == ""
    assert choice is not None
    assert (choice["length_penalty"], choice["copy_bias"]) == (2.0, 1.6)
    assert choice["chosen_on"] == "previous build" and choice["reuses"] == 1 and choice["previous_build"] == "b41d"


def test_a_reused_choice_is_reused_again_until_the_limit_then_chosen_anew(tmp_path: Path) -> None:
    model = updated_model(tmp_path / "model")
    below = previous_bundle(tmp_path / "below", choice={"chosen_on": "previous build", "reuses": MAX_CHOICE_REUSES - 1})
    at = previous_bundle(tmp_path / "at", choice={"chosen_on": "previous build", "reuses": MAX_CHOICE_REUSES})

    reused, _ = inherited_choice(model, below, 4)
    anew, why_not = inherited_choice(model, at, 4)

    assert reused is not None and reused["reuses"] == MAX_CHOICE_REUSES
    assert anew is None and f"after {MAX_CHOICE_REUSES} builds" in why_not


@pytest.mark.parametrize(
    ("model_mode", "bundle_sha", "beam_width", "chosen_on", "reason"),
    [
        ("full", WEIGHTS_SHA, 4, "validation rows", "a full training chooses its decoding anew"),
        ("update", "b" * 64, 4, "validation rows", "not updated from the weights the previous build bundled"),
        ("update", WEIGHTS_SHA, 1, "validation rows", "beam width 1, this one at 4"),
        ("update", WEIGHTS_SHA, 4, "defaults", "not chosen on validation rows (defaults)"),
        ("update", WEIGHTS_SHA, 4, "given", "not chosen on validation rows (given)"),
    ],
    ids=["full training", "other weights", "other beam width", "defaults", "given options"],
)
def test_the_choice_is_made_anew_when_it_does_not_carry_over(
    tmp_path: Path, model_mode: str, bundle_sha: str, beam_width: int, chosen_on: str, reason: str
) -> None:
    model = updated_model(tmp_path / "model", mode=model_mode)
    bundle = previous_bundle(tmp_path / "before", bundle_sha, beam_width, {"chosen_on": chosen_on})

    choice, why_not = inherited_choice(model, bundle, 4)

    assert choice is None
    assert reason in why_not


def test_without_a_previous_build_there_is_nothing_to_reuse(tmp_path: Path) -> None:
    model = updated_model(tmp_path / "model")

    assert inherited_choice(model, None, 4) == (None, "no previous build")
    assert inherited_choice(model, tmp_path / "empty", 4)[0] is None
