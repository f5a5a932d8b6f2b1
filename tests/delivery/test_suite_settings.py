"""The suite's own settings: every test runs under a timeout that turns a hang into a failure with its stack."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ini_timeout() -> float:
    """The `--timeout=N` in pytest.ini's addopts (pytest-timeout's per-test limit, fixtures' setup included)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "pytest.ini", encoding="utf-8")
    options = [option for option in shlex.split(parser["pytest"]["addopts"]) if option.startswith("--timeout=")]
    assert len(options) == 1, f"pytest.ini's addopts should set --timeout once, found {options}"
    return float(options[0].split("=", 1)[1])


def test_pytest_ini_gives_every_test_at_most_five_minutes() -> None:
    assert 0 < ini_timeout() <= 300


def test_this_run_has_the_timeout_plugin_on(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed: install the dev lock"


def test_a_hung_test_fails_with_its_stack_instead_of_hanging_the_run(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --timeout=1\n")
    (tmp_path / "test_hang.py").write_text(
        textwrap.dedent(
            """
            import time

            def test_hangs():
                time.sleep(60)
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path / "test_hang.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Timeout (>1.0s)" in result.stdout
    assert "time.sleep(60)" in result.stdout  # the stack shows where it hung


def test_every_module_the_run_order_and_grouping_name_exists() -> None:
    from tests.conftest import MAIN_SERVER_MODULES, RUN_FIRST, RUN_LAST

    missing = [name for name in (*RUN_FIRST, *RUN_LAST, *MAIN_SERVER_MODULES) if not (ROOT / name).is_file()]
    assert not missing, f"tests/conftest.py orders modules that do not exist: {missing}"
    assert len(set(RUN_FIRST + RUN_LAST)) == len(RUN_FIRST) + len(RUN_LAST)


def test_make_test_hands_out_modules_in_the_conftest_order() -> None:
    """`--no-loadscope-reorder`: without it pytest-xdist sorts modules by their number of tests, not by RUN_FIRST."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    line = next(line for line in makefile.splitlines() if line.startswith("PYTEST_ARGS ?="))
    assert "--dist loadscope" in line and "--no-loadscope-reorder" in line, line
