"""Shared by the reliability tests: one tiny real model and one real `stages serve` on it, both per session.

The server runs with the *default* limits (no `ISSUE_TITLES_*` variables), as a serving image would, so the fuzz
tests exercise the limits a user gets out of the box. (The load test runs on the suite's main server, tests/conftest.py:
its limit variables only lower request sizes the load never nears.)
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serving.serving_harness import ServerProcess, use_xla_cache


@pytest.fixture(scope="session", autouse=True)
def xla_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's one XLA cache folder for real servers, as in tests/serving/conftest.py (the same folder)."""
    return use_xla_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle_dir: Path) -> Path:
    """A real, tiny serving bundle (what `stages build` writes): the run's one (tests/conftest.py); read-only."""
    return tiny_bundle_dir


@pytest.fixture(scope="session")
def default_server(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch_session: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    """`stages serve` exactly as the image runs it, default limits."""
    for variable in [name for name in os.environ if name.startswith("ISSUE_TITLES_")]:
        monkeypatch_session.delenv(variable)
    server = ServerProcess(tiny_model, tmp_path_factory.mktemp("server") / "server.log", via_stages_cli=True)
    with server.running() as process:
        yield process


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """One client session for the fuzz run's 2,000+ requests. The server is on 127.0.0.1, so the session ignores the
    environment's proxy, .netrc and CA settings: requests would otherwise look them up again for every request
    (~0.1 ms each, 0.25 CPU s per 2,000 requests here), and a proxy variable could route loopback calls elsewhere."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


def resident_memory_mb(pid: int) -> float:
    """Resident set size of a process (psutil when installed, else /proc/<pid>/status VmRSS)."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no VmRSS line for pid {pid}") from None
    return psutil.Process(pid).memory_info().rss / 1024 / 1024
