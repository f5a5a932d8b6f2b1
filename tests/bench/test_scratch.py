"""`python -m bench --keep-scratch DIR` leaves the run's states in DIR (to try more updates on a kept incremental
state); without it the working folder is removed. A folder with older states in it is refused, not mixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import scratch_dir


def test_a_kept_scratch_folder_stays_with_what_the_run_wrote(tmp_path: Path) -> None:
    keep = tmp_path / "states"
    with scratch_dir(keep) as name:
        (Path(name) / "A").mkdir()
    assert Path(name) == keep and (keep / "A").is_dir()


def test_the_default_scratch_folder_is_removed() -> None:
    with scratch_dir() as name:
        (Path(name) / "A").mkdir()
    assert not Path(name).exists()


def test_a_kept_scratch_folder_with_older_states_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    with pytest.raises(SystemExit, match="is not empty"):
        scratch_dir(tmp_path)
