"""Fixtures: the main model server (session-wide) and an HTTP session.

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

from tests.serving.serving_harness import LIMITS_ENV, ServerProcess, free_port, real_model_available, use_xla_cache


@pytest.fixture(scope="session", autouse=True)
def xla_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XLA cache folder for every real server of the run, all xdist workers (`use_xla_cache`)."""
    return use_xla_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str | None]:
    """(model folder, predictor loader): the run's tiny bundle (tests/conftest.py) when available, else the echo
    fake."""
    if real_model_available():
        return request.getfixturevalue("tiny_bundle_dir"), None
    return tmp_path_factory.mktemp("fake_bundle"), "fake_predictor:load"


@pytest.fixture(scope="session")
def server(bundle: tuple[Path, str | None], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    model_dir, loader = bundle
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = dict(LIMITS_ENV)
    metrics_port = None
    if loader is None:
        metrics_port = free_port()
        env["MLSERVER_METRICS_PORT"] = str(metrics_port)
    server = ServerProcess(model_dir, log_path, predictor_loader=loader, env=env, via_stages_cli=loader is None,
                           metrics_port=metrics_port)  # fmt: skip
    with server.running() as process:
        yield process


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def pytest_report_header(config: pytest.Config) -> str:
    model = "tiny_bundle (real model)" if real_model_available() else "fake_predictor (echo model)"
    return f"serving tests model: {model}"
