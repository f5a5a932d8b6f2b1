"""Fixtures for the local-runner tests: a fresh state directory and a control folder for the fake stage."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localpach.cli import build_parser
from localpach.data import put_file
from localpach.pfs import PFS
from localpach.runner import RunSummary, run_pipelines

HERE = Path(__file__).parent
PROJECT_ROOT = HERE.parent.parent


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """localpach's subcommands and their parsers, by name (argparse keeps them in its subparsers action)."""
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return action._name_parser_map


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Files dropped here steer the fake stage (fail-NAME, slow-NAME, ...); steps inherit FAKE_CONTROL."""
    folder = tmp_path / "control"
    folder.mkdir()
    monkeypatch.setenv("FAKE_CONTROL", str(folder))
    return folder


@pytest.fixture
def pfs(state: Path) -> PFS:
    return PFS(state)


def run(state: Path, specs: list[dict]) -> RunSummary:
    return run_pipelines(state, specs)


def put(state: Path, source: Path, path: str = "issues.csv", overwrite: bool = True):
    return put_file(state, "raw_data", path, source, overwrite=overwrite)


def localpach_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real console entry point in a child process (what a user runs)."""
    return subprocess.run(
        [sys.executable, "-m", "localpach", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=PROJECT_ROOT,
    )


@pytest.fixture(scope="session")
def populated_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project-like pipelines run once on three rows, with the fake stage unsteered: what `populated` copies."""
    from tests.local.localpach_fakes import issue_csv, project_like_specs

    root = tmp_path_factory.mktemp("populated")
    (root / "control").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_CONTROL", str(root / "control"))
        put(root / "state", issue_csv(root / "issues.csv", rows=3))
        assert run(root / "state", project_like_specs()).ok
    return root / "state"


@pytest.fixture
def populated(populated_once: Path, state: Path, control: Path) -> Path:
    """A state where the project-like pipelines ran once on three rows (for the CLI's views): a copy of the session's
    one such run (five fake-stage processes and the runner's bookkeeping, made once), which the test may change."""
    shutil.copytree(populated_once, state, symlinks=True)
    return state


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`localpach ARGS` in-process: exit code, stdout, stderr."""
    from localpach.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
