"""Limits from the environment are checked before the server starts, and SIGTERM stops it within seconds in every
state: idle, loading the model, running a model call that never returns, waiting for a body that never comes."""

import functools
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from issue_titles.serving.limits import ServingLimits
from tests.serving.serving_harness import Outcome, ServerProcess, side_by_side

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


# --- SIGTERM in each state: one fake server per state, all signalled side by side --------------------------------


def while_loading(server: ServerProcess) -> float:
    server.wait_until(server.is_live, "live")
    return seconds_to_stop(server)


def while_a_model_call_never_returns(server: ServerProcess) -> float:
    server.wait_ready()

    def send_a_stuck_request() -> None:
        try:
            requests.post(server.url + "/predict", json={"data": {"ndarray": [["stuck"]]}}, timeout=60)
        except requests.RequestException:  # the server went away: expected
            pass

    threading.Thread(target=send_a_stuck_request, daemon=True).start()
    mark = Path(server.env["FAKE_STUCK_MARK"])
    server.wait_until(mark.exists, "inside the stuck model call", timeout=30)  # the request is in the model now
    return seconds_to_stop(server)


def while_waiting_for_a_body(server: ServerProcess) -> float:
    server.wait_ready()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)
        return seconds_to_stop(server)


def while_idle(server: ServerProcess) -> float:
    server.wait_ready()
    return seconds_to_stop(server)


# name: (predictor loader, environment, what brings the server to that state and signals it)
STATES: dict[str, tuple[str, dict[str, str], Callable[[ServerProcess], float]]] = {
    "loading": ("fake_predictor:load_slowly", {"FAKE_LOAD_SECONDS": "120"}, while_loading),
    "stuck": ("fake_predictor:load_stuck", {}, while_a_model_call_never_returns),
    "waiting for a body": ("fake_predictor:load", {}, while_waiting_for_a_body),
    "idle": ("fake_predictor:load", {}, while_idle),
}


@dataclass
class Stopped:
    seconds: float  # from SIGTERM to the process's end
    returncode: int | None
    log: str


def stop_in_state(state: str, folder: Path) -> Stopped:
    loader, env, signal_in_state = STATES[state]
    env = {**env, "FAKE_STUCK_MARK": str(folder / "stuck")}
    server = ServerProcess(folder, folder / "server.log", predictor_loader=loader, env=env)
    try:
        seconds = signal_in_state(server.start())
    finally:
        returncode = server.stop(signal.SIGKILL)  # a no-op for a server that left by itself
    return Stopped(seconds, returncode, server.log())


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome[Stopped]]:
    """Each state's own fake server, brought to that state and sent SIGTERM, all at the same time (`side_by_side`).

    Most of each stop is a wait for a server-side timer (the 3 s graceful shutdown, the 6 s backstop), so side by
    side they take as long as the slowest one instead of their sum (~8 s instead of ~20). Each server is its own
    process on its own port, signalled only once it is in its state and timed from its own signal: each test checks
    what it checked with a server of its own."""
    folders = {state: tmp_path_factory.mktemp("sigterm") for state in STATES}
    return side_by_side({state: functools.partial(stop_in_state, state, folder) for state, folder in folders.items()})


def test_sigterm_stops_a_server_still_loading_its_model(stopped: dict[str, Outcome[Stopped]]) -> None:
    loading = stopped["loading"].get()

    assert loading.seconds < STOPS_WITHIN_S, loading.log


def test_sigterm_stops_a_server_whose_model_call_never_returns(stopped: dict[str, Outcome[Stopped]]) -> None:
    stuck = stopped["stuck"].get()

    assert stuck.seconds < STOPS_WITHIN_S, stuck.log
    assert "did not stop within 6 s" in stuck.log  # the model thread was stuck: the backstop ended it


def test_sigterm_stops_a_server_waiting_for_a_body(stopped: dict[str, Outcome[Stopped]]) -> None:
    waiting = stopped["waiting for a body"].get()

    assert waiting.seconds < STOPS_WITHIN_S, waiting.log


def test_sigterm_stops_an_idle_server_at_once_and_cleanly(stopped: dict[str, Outcome[Stopped]]) -> None:
    idle = stopped["idle"].get()

    assert idle.seconds < 5, idle.log
    assert idle.returncode == 0
    assert "did not stop within" not in idle.log  # stopped by itself, not by the 6 s backstop
