"""Limits from the environment are checked before the server starts, and SIGTERM stops it within seconds in every
state: idle, loading the model, running a model call that never returns, waiting for a body that never comes."""

import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from issue_titles.serving.limits import ServingLimits
from tests.serving.serving_harness import ServerProcess

# The server leaves at most 6 s after SIGTERM (server.HARD_EXIT_S); the margin is for a loaded test machine.
STOPS_WITHIN_S = 12


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e9", "2"])
def test_an_absurd_batch_window_is_refused_naming_its_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"^ISSUE_TITLES_ADAPTIVE_BATCH_TIME must be a finite number of seconds"):
        ServingLimits.from_env({"ISSUE_TITLES_ADAPTIVE_BATCH_TIME": value})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ISSUE_TITLES_MAX_REQUEST_BYTES", "99999999999", "ISSUE_TITLES_MAX_REQUEST_BYTES must be at most 1073741824"),
        ("ISSUE_TITLES_MAX_BATCH_BODIES", "0", "ISSUE_TITLES_MAX_BATCH_BODIES must be a whole number >= 1, got 0"),
        ("ISSUE_TITLES_ADAPTIVE_BATCH_SIZE", "1000000", "ISSUE_TITLES_ADAPTIVE_BATCH_SIZE must be at most 4096"),
        ("ISSUE_TITLES_BODY_TIMEOUT", "inf", "ISSUE_TITLES_BODY_TIMEOUT must be a finite number of seconds"),
        ("ISSUE_TITLES_BODY_TIMEOUT", "0", "ISSUE_TITLES_BODY_TIMEOUT must be a finite number of seconds"),
    ],
)
def test_an_absurd_limit_is_refused_naming_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        ServingLimits.from_env({variable: value})


def test_an_argument_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="adaptive_batch_time must be a finite number of seconds from 0 to 1"):
        ServingLimits(adaptive_batch_time=float("inf"))


def test_server_refuses_to_start_with_an_infinite_batch_window(tmp_path) -> None:
    process = ServerProcess(
        tmp_path,
        tmp_path / "inf.log",
        predictor_loader="fake_predictor:load",
        env={"ISSUE_TITLES_ADAPTIVE_BATCH_TIME": "inf"},
    ).start()
    try:
        returncode = process.popen.wait(timeout=60)
    finally:
        process.stop()

    assert returncode == 2  # StageError's exit code
    assert (
        "error: bad serving limit: ISSUE_TITLES_ADAPTIVE_BATCH_TIME must be a finite number of seconds from 0 to 1, "
        "got inf" in process.log()
    )


def seconds_to_stop(process: ServerProcess) -> float:
    started = time.monotonic()
    process.popen.send_signal(signal.SIGTERM)
    try:
        process.popen.wait(timeout=30)
    except Exception:
        pass
    return time.monotonic() - started


@pytest.fixture()
def fake_server(tmp_path, request) -> Iterator[ServerProcess]:
    loader, env = request.param
    process = ServerProcess(tmp_path, tmp_path / "server.log", predictor_loader=loader, env=env).start()
    yield process
    process.stop(signal.SIGKILL)


SLOW_LOADER = ("fake_predictor:load_slowly", {"FAKE_LOAD_SECONDS": "120"})


@pytest.mark.parametrize("fake_server", [SLOW_LOADER], indirect=True)
def test_sigterm_stops_a_server_still_loading_its_model(fake_server: ServerProcess) -> None:
    fake_server.wait_until(fake_server.is_live, "live")

    assert seconds_to_stop(fake_server) < STOPS_WITHIN_S, fake_server.log()


@pytest.mark.parametrize("fake_server", [("fake_predictor:load_stuck", {})], indirect=True)
def test_sigterm_stops_a_server_whose_model_call_never_returns(fake_server: ServerProcess) -> None:
    fake_server.wait_ready()

    def send_a_stuck_request() -> None:
        try:
            requests.post(fake_server.url + "/predict", json={"data": {"ndarray": [["stuck"]]}}, timeout=60)
        except requests.RequestException:  # the server went away: expected
            pass

    threading.Thread(target=send_a_stuck_request, daemon=True).start()
    time.sleep(1)  # the request is in the model now

    assert seconds_to_stop(fake_server) < STOPS_WITHIN_S, fake_server.log()
    assert "did not stop within 6 s" in fake_server.log()  # the model thread was stuck: the backstop ended it


@pytest.mark.parametrize("fake_server", [("fake_predictor:load", {})], indirect=True)
def test_sigterm_stops_a_server_waiting_for_a_body(fake_server: ServerProcess) -> None:
    fake_server.wait_ready()
    with socket.create_connection(("127.0.0.1", fake_server.port)) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)

        assert seconds_to_stop(fake_server) < STOPS_WITHIN_S, fake_server.log()


@pytest.mark.parametrize("fake_server", [("fake_predictor:load", {})], indirect=True)
def test_sigterm_stops_an_idle_server_at_once_and_cleanly(fake_server: ServerProcess) -> None:
    fake_server.wait_ready()

    assert seconds_to_stop(fake_server) < 5, fake_server.log()
    assert fake_server.popen.returncode == 0
    assert "did not stop within" not in fake_server.log()  # stopped by itself, not by the 6 s backstop
