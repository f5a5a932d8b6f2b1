"""Liveness, readiness and startup failures, on real server processes (the fake predictor stands in for the
model where only loading behaviour matters, so these servers start in seconds and run beside the main one)."""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serving.serving_harness import TUTORIAL_PAYLOAD, ServerProcess


def exit_code(process: ServerProcess) -> int:
    """Start a server that must refuse to run; its exit code (it is stopped either way)."""
    process.start()
    assert process.process is not None
    try:
        return process.process.wait(timeout=60)
    finally:
        process.stop()


def test_loaded_server_is_live_and_ready(server: ServerProcess, http: requests.Session) -> None:
    assert http.get(server.url + "/v2/health/live", timeout=5).status_code == 200
    assert http.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
    assert http.get(server.url + "/v2/models/issue-summarization/ready", timeout=5).status_code == 200


def test_seldon_executor_status_path_reports_ready(server: ServerProcess, http: requests.Session) -> None:
    response = http.get(server.url + "/health/status", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "model": "issue-summarization"}


@pytest.fixture()
def slow_server(tmp_path) -> Iterator[ServerProcess]:
    """A server whose model loads only once the test creates `FAKE_LOAD_RELEASE` (`fake_predictor.load_when_released`):
    live and not ready for exactly as long as the test looks, instead of a fixed sleep long enough for slow machines."""
    env = {"FAKE_LOAD_RELEASE": str(tmp_path / "release")}
    process = ServerProcess(tmp_path, tmp_path / "slow.log", predictor_loader="fake_predictor:load_when_released",
                            env=env).start()  # fmt: skip
    yield process
    process.stop()


def test_server_is_ready_only_once_the_model_is_loaded(slow_server: ServerProcess) -> None:
    slow_server.wait_until(slow_server.is_live, "live")

    not_ready = requests.get(slow_server.url + "/v2/health/ready", timeout=5)
    early = requests.post(slow_server.url + "/api/v1.0/predictions", data=TUTORIAL_PAYLOAD, timeout=5)
    Path(slow_server.env["FAKE_LOAD_RELEASE"]).touch()  # the model load ends now
    slow_server.wait_ready()
    later = requests.post(slow_server.url + "/api/v1.0/predictions", data=TUTORIAL_PAYLOAD, timeout=5)

    assert not_ready.status_code == 400  # MLServer's answer while a model is loading: anything but 2xx/3xx
    assert early.status_code == 503
    assert early.json() == {"error": "the model is still loading; retry when /v2/health/ready answers 200"}
    assert later.status_code == 200


def test_server_exits_with_an_error_when_the_model_cannot_load(tmp_path) -> None:
    process = ServerProcess(tmp_path, tmp_path / "broken.log", predictor_loader="fake_predictor:load_broken")
    returncode = exit_code(process)

    assert returncode == 2  # StageError's exit code, as `stages serve` reports it
    assert "no model weights in" in process.log()
    assert "error: model 'issue-summarization' could not be loaded; see the log above" in process.log()


def test_server_refuses_a_missing_model_folder(tmp_path) -> None:
    process = ServerProcess(tmp_path / "absent", tmp_path / "absent.log")
    returncode = exit_code(process)

    assert returncode == 2  # StageError's exit code, as `stages serve` reports it
    assert f"error: {tmp_path / 'absent'}: model bundle folder not found" in process.log()


def test_server_refuses_a_port_in_use(server: ServerProcess, tmp_path) -> None:
    process = ServerProcess(tmp_path, tmp_path / "busy.log", predictor_loader="fake_predictor:load", port=server.port)
    returncode = exit_code(process)

    assert returncode == 2  # StageError's exit code, as `stages serve` reports it
    assert f"error: cannot listen for HTTP on 127.0.0.1:{server.port}: Address already in use" in process.log()


def test_server_stops_cleanly_on_sigterm(tmp_path) -> None:
    process = ServerProcess(tmp_path, tmp_path / "term.log", predictor_loader="fake_predictor:load").start()
    process.wait_ready()

    returncode = process.stop(signal.SIGTERM)

    assert returncode == 0, process.log()
    assert not process.is_live()
