"""Fixtures: an HTTP session; the main model server (`server`, session-wide) is in tests/conftest.py, shared with
the reliability load test.

The main server is `stages serve` on `tests.tiny_model.tiny_bundle` (a real, tiny trained model). Where
that fixture or the predictor is not importable the tests fall back to `fake_predictor` (an echo model) so the
HTTP behaviour is still checked; the header line of the test run says which one was used. The real one also serves
Prometheus metrics on the port `MLSERVER_METRICS_PORT` names (the serving image's way of turning them on), which
tests/serving/test_observability.py scrapes: one server start fewer than a server of its own.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serving.serving_harness import real_model_available, use_xla_cache


@pytest.fixture(scope="session", autouse=True)
def xla_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XLA cache folder for every real server of the run, all xdist workers (`use_xla_cache`)."""
    return use_xla_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def bundle(main_server_bundle: tuple[Path, str | None]) -> tuple[Path, str | None]:
    """(model folder, predictor loader) the main server runs (tests/conftest.py)."""
    return main_server_bundle


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def pytest_report_header(config: pytest.Config) -> str:
    model = "tiny_bundle (real model)" if real_model_available() else "fake_predictor (echo model)"
    return f"serving tests model: {model}"
