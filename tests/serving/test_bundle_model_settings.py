"""`stages serve` honours the bundle's model-settings.json (what `stages build` writes, and what MLServer itself would
read): its adaptive batching applies unless an ISSUE_TITLES_* variable or an argument says otherwise."""

import json
from pathlib import Path

import pytest

from issue_titles.errors import StageError
from issue_titles.serving.server import bundle_batching, serve
from tests.serving.serving_harness import ServerProcess


def bundle_with_settings(folder: Path, **settings: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model-settings.json").write_text(json.dumps({"name": "issue-summarization", **settings}))
    return folder


def test_the_bundles_batching_becomes_the_servers_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ISSUE_TITLES_ADAPTIVE_BATCH_SIZE", raising=False)
    monkeypatch.delenv("ISSUE_TITLES_ADAPTIVE_BATCH_TIME", raising=False)
    bundle = bundle_with_settings(tmp_path / "bundle", max_batch_size=3, max_batch_time=0.02)

    assert bundle_batching(bundle) == {"adaptive_batch_size": 3, "adaptive_batch_time": 0.02}


def test_a_variable_wins_over_the_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSUE_TITLES_ADAPTIVE_BATCH_SIZE", "8")
    monkeypatch.delenv("ISSUE_TITLES_ADAPTIVE_BATCH_TIME", raising=False)
    bundle = bundle_with_settings(tmp_path / "bundle", max_batch_size=3, max_batch_time=0.02)

    assert bundle_batching(bundle) == {"adaptive_batch_time": 0.02}


def test_a_bundle_batching_out_of_range_is_refused_naming_the_file(tmp_path: Path) -> None:
    bundle = bundle_with_settings(tmp_path / "bundle", max_batch_time=100)

    with pytest.raises(StageError, match=r"model-settings.json max_batch_time must be a finite number of seconds"):
        serve(bundle, "127.0.0.1", 9)


def test_a_served_bundle_logs_the_batching_it_was_built_with(tmp_path: Path) -> None:
    bundle = bundle_with_settings(tmp_path / "bundle", max_batch_size=3, max_batch_time=0.004)
    server = ServerProcess(bundle, tmp_path / "server.log", predictor_loader="fake_predictor:load")
    with server.running():
        pass

    assert "'adaptive_batch_size': 3" in server.log() and "'adaptive_batch_time': 0.004" in server.log()
