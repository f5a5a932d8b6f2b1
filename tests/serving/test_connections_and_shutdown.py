"""Connections that hold the server without asking anything, shutdown with requests in flight, request ids that
are not header-safe, multi-member gzip bodies (hardening round 3, issue 29: items 1, 5, 7, 10).

Connection tests use a dedicated server with a 1 s header timeout, a 1 s idle timeout and a cap of 20 connections,
so every wait is short; each opens at most 60 sockets on 127.0.0.1. The request-id and gzip tests send one request
each to that same server (none of them comes near its limits), each on a new connection, so the 1 s idle timeout
never closes a kept-alive one under them. Every server here runs the echo model (`python -m issue_titles.serving
--predictor-loader`, the same `serve()` as `stages serve`, which always loads the real model): what these tests
check is the HTTP layer in front of any model (timeouts, the cap, the guard's gzip decoding, the V2 request id the
data plane echoes), and the echo model starts in ~1 CPU second where the real one takes ~10-16. The open-file and
shutdown tests swap in a deliberately slow model the same way.
"""

import functools
import gzip
import json
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from issue_titles.serving.limits import ServingLimits
from tests.serving.serving_harness import Outcome, ServerProcess, side_by_side

SELDON = "/api/v1.0/predictions"
V2_INFER = "/v2/models/issue-summarization/infer"
HEADER_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 20


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("capped_server")
    env = {
        "ISSUE_TITLES_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S),
        "ISSUE_TITLES_IDLE_TIMEOUT": str(IDLE_TIMEOUT_S),
        "ISSUE_TITLES_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "ISSUE_TITLES_BODY_TIMEOUT": "5",
    }
    server = ServerProcess(folder, folder / "server.log", predictor_loader="fake_predictor:load", env=env)
    with server.running() as process:
        yield process


def connect(server: ServerProcess, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def read_until_closed(connection: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer, time.monotonic() - started


def status_and_json(answer: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


# --- 1: idle and header timeouts, a connection cap --------------------------------------------------------------


def say_nothing(server: ServerProcess) -> tuple[bytes, float]:
    with connect(server) as connection:
        return read_until_closed(connection)


def stall_in_the_header_block(server: ServerProcess) -> tuple[bytes, float]:
    with connect(server) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: app")
        return read_until_closed(connection)


def send_headers_a_byte_at_a_time(server: ServerProcess) -> tuple[bytes, float]:
    """(the answer, seconds from the first byte to the close); a byte every 0.1 s, 70 bytes, unless closed first."""
    with connect(server) as connection:
        started = time.monotonic()
        for byte in b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            try:
                connection.sendall(bytes([byte]))
            except OSError:  # closed by the server: what is expected
                break
            time.sleep(0.1)
        answer, _ = read_until_closed(connection)
    return answer, time.monotonic() - started


def ask_once_then_say_nothing(server: ServerProcess) -> tuple[bytes, float]:
    with connect(server) as connection:
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        return read_until_closed(connection)


@pytest.fixture(scope="module")
def closed_by_timeout(capped_server: ServerProcess) -> dict[str, Outcome[tuple[bytes, float]]]:
    """What each timeout test's connection got before the server closed it, and how long that took: the four
    exchanges run at the same time (`side_by_side`), each on a connection of its own, because each is a wait for
    that connection's own 1 s timer (the header and idle timeouts run per connection), so together they take one
    wait instead of four. Four connections are far under the cap of 20, which nothing else uses meanwhile."""
    return side_by_side(
        {
            "silent": functools.partial(say_nothing, capped_server),
            "stalled": functools.partial(stall_in_the_header_block, capped_server),
            "byte at a time": functools.partial(send_headers_a_byte_at_a_time, capped_server),
            "kept alive": functools.partial(ask_once_then_say_nothing, capped_server),
        }
    )


def test_a_silent_connection_is_closed_after_the_header_timeout(
    closed_by_timeout: dict[str, Outcome[tuple[bytes, float]]],
) -> None:
    answer, waited = closed_by_timeout["silent"].get()

    assert answer == b""
    assert HEADER_TIMEOUT_S * 0.8 < waited < HEADER_TIMEOUT_S + 2


def test_a_stalled_header_block_gets_a_json_408_and_is_closed(
    closed_by_timeout: dict[str, Outcome[tuple[bytes, float]]],
) -> None:
    answer, waited = closed_by_timeout["stalled"].get()

    status, headers, body = status_and_json(answer)
    assert (status, headers["content-type"], headers["connection"]) == (408, "application/json", "close")
    assert body == {"error": f"the request headers did not arrive within {HEADER_TIMEOUT_S:g} s"}
    assert waited < HEADER_TIMEOUT_S + 2


def test_headers_sent_a_byte_at_a_time_do_not_extend_the_header_timeout(
    closed_by_timeout: dict[str, Outcome[tuple[bytes, float]]],
) -> None:
    answer, waited = closed_by_timeout["byte at a time"].get()

    assert waited < HEADER_TIMEOUT_S + 2
    assert status_and_json(answer)[0] == 408


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(
    closed_by_timeout: dict[str, Outcome[tuple[bytes, float]]],
) -> None:
    answer, waited = closed_by_timeout["kept alive"].get()

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert waited < IDLE_TIMEOUT_S + 2


def test_health_and_predictions_answer_while_silent_sockets_exceed_the_cap(capped_server: ServerProcess) -> None:
    silent = [connect(capped_server) for _ in range(3 * MAX_CONNECTIONS)]
    try:
        started = time.monotonic()
        ready = requests.get(capped_server.url + "/v2/health/ready", timeout=3)
        predicted = requests.post(capped_server.url + SELDON, json={"data": {"ndarray": [["a b c d"]]}}, timeout=3)
        waited = time.monotonic() - started
    finally:
        for connection in silent:
            connection.close()

    assert ready.status_code == 200
    assert predicted.status_code == 200, predicted.text
    assert waited < HEADER_TIMEOUT_S  # answered at once, not after the silent ones timed out


def test_a_connection_over_the_cap_while_every_request_is_in_flight_gets_a_json_503(
    capped_server: ServerProcess,
) -> None:
    stalled = []
    try:
        for _ in range(MAX_CONNECTIONS):  # each has a request in flight: its body never ends (5 s body timeout)
            connection = connect(capped_server)
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            stalled.append(connection)
        time.sleep(0.3)
        with connect(capped_server) as extra:
            answer, waited = read_until_closed(extra)
    finally:
        for connection in stalled:
            connection.close()

    status, headers, body = status_and_json(answer)
    assert (status, headers["content-type"], headers["retry-after"]) == (503, "application/json", "1")
    assert "connections with requests in flight" in body["error"]
    assert waited < 1.0


def test_silent_sockets_past_the_open_file_limit_do_not_wedge_the_server(tmp_path) -> None:
    # 200 open files for the server, 300 silent sockets: without the cap, accept() fails with EMFILE and every
    # client (health checks included) times out until the sockets go away.
    env = {"ISSUE_TITLES_MAX_CONNECTIONS": "50", "ISSUE_TITLES_HEADER_TIMEOUT": "60"}
    server = ServerProcess(tmp_path, tmp_path / "server.log", predictor_loader="fake_predictor:load", env=env,
                           open_files=200)  # fmt: skip
    with server.running():
        silent = []
        try:
            for _ in range(300):
                silent.append(connect(server))
            time.sleep(0.5)
            ready = requests.get(server.url + "/v2/health/ready", timeout=3)
            predicted = requests.post(server.url + SELDON, json={"data": {"ndarray": [["a b c"]]}}, timeout=3)
        finally:
            for connection in silent:
                connection.close()

    assert ready.status_code == 200
    assert predicted.status_code == 200, predicted.text


def test_a_connection_cap_the_open_file_limit_cannot_hold_refuses_to_start(tmp_path) -> None:
    env = {"ISSUE_TITLES_MAX_CONNECTIONS": "512"}
    server = ServerProcess(tmp_path, tmp_path / "server.log", predictor_loader="fake_predictor:load", env=env,
                           open_files=256)  # fmt: skip
    server.start()
    try:
        returncode = server.popen.wait(timeout=60)
    finally:
        server.stop()

    assert returncode == 2
    assert ("error: ISSUE_TITLES_MAX_CONNECTIONS=512 needs 640 open files, but the limit is 256 (ulimit -n); "
            "lower ISSUE_TITLES_MAX_CONNECTIONS to at most 128") in server.log()  # fmt: skip


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("ISSUE_TITLES_HEADER_TIMEOUT", "0", "ISSUE_TITLES_HEADER_TIMEOUT must be a finite number of seconds from 0.1"),
        ("ISSUE_TITLES_IDLE_TIMEOUT", "inf", "ISSUE_TITLES_IDLE_TIMEOUT must be a finite number of seconds from 0.1"),
        ("ISSUE_TITLES_MAX_CONNECTIONS", "0", "ISSUE_TITLES_MAX_CONNECTIONS must be a whole number >= 1"),
        ("ISSUE_TITLES_MAX_CONNECTIONS", "1000000", "ISSUE_TITLES_MAX_CONNECTIONS must be at most 100000"),
    ],
)
def test_connection_limits_are_validated_naming_their_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServingLimits.from_env({variable: value})


def test_connection_limit_defaults() -> None:
    limits = ServingLimits()

    assert (limits.header_timeout, limits.idle_timeout, limits.max_connections) == (10.0, 5.0, 512)


# --- 7: shutdown with requests in flight ------------------------------------------------------------------------


def sigterm_with_30_requests_queued(folder: Path) -> tuple[Counter, str]:
    """What 30 clients got when SIGTERM came with their requests queued or in the model, and the server's log.

    One request per model call (no adaptive batching, no merging), 0.4 s each: 30 requests need 12 s, the graceful
    shutdown gives them 3 s."""
    env = {"ISSUE_TITLES_MAX_BATCH_BODIES": "1", "ISSUE_TITLES_ADAPTIVE_BATCH_SIZE": "1", "FAKE_PREDICT_SECONDS": "0.4"}
    server = ServerProcess(folder, folder / "server.log", predictor_loader="fake_predictor:load_sleepy", env=env)
    server.start()
    try:
        server.wait_ready()
        answers: list[tuple] = []

        def send_one(number: int) -> None:
            try:
                response = requests.post(
                    server.url + SELDON, json={"data": {"ndarray": [[f"body {number}"]]}}, timeout=30
                )
                answers.append((response.status_code, response.headers.get("content-type")))
            except requests.RequestException as error:
                answers.append(("no answer", type(error).__name__))

        senders = [threading.Thread(target=send_one, args=(number,)) for number in range(30)]
        for sender in senders:
            sender.start()
        time.sleep(1.0)
        server.popen.send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(timeout=30)
        server.popen.wait(timeout=20)
    finally:
        server.stop(signal.SIGKILL)
    return Counter(answers), server.log()


def sigterm_with_one_request_in_flight(folder: Path) -> tuple[bytes, bytes]:
    """(what a kept-alive connection got for a request sent just after SIGTERM, b"" if it was closed first; the
    answer to the request that was in the model when SIGTERM came)."""
    env = {"FAKE_PREDICT_SECONDS": "2.5"}
    server = ServerProcess(folder, folder / "server.log", predictor_loader="fake_predictor:load_sleepy", env=env)
    server.start()
    try:
        server.wait_ready()
        with connect(server, timeout=10) as busy, connect(server, timeout=10) as kept_alive:
            kept_alive.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200 ")
            body = b'{"data":{"ndarray":[["slow"]]}}'
            busy.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
            time.sleep(0.3)
            server.popen.send_signal(signal.SIGTERM)
            time.sleep(0.05)  # before uvicorn closes idle connections (it looks every 0.1 s)
            try:
                kept_alive.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
                during, _ = read_until_closed(kept_alive)
            except OSError:
                during = b""
            finished, _ = read_until_closed(busy)
        server.popen.wait(timeout=20)
    finally:
        server.stop(signal.SIGKILL)
    return during, finished


@pytest.fixture(scope="module")
def shutdowns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome[Any]]:
    """Both shutdown scenarios, each on a server of its own, run at the same time (`side_by_side`): each is mostly
    a wait for the server's 3 s graceful shutdown, so together they take as long as one (~6 s instead of ~12).
    Neither server sees the other's requests or signal: each test checks what it checked on a server of its own."""
    return side_by_side(
        {
            "queued": functools.partial(sigterm_with_30_requests_queued, tmp_path_factory.mktemp("queued")),
            "in flight": functools.partial(sigterm_with_one_request_in_flight, tmp_path_factory.mktemp("in_flight")),
        }
    )


def test_sigterm_answers_requests_it_cannot_finish_with_a_json_503(shutdowns: dict[str, Outcome[Any]]) -> None:
    counts, log = shutdowns["queued"].get()

    assert set(counts) <= {(200, "application/json"), (503, "application/json")}, counts
    assert counts[(503, "application/json")] > 0, counts  # the shutdown did cut some short
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log


def test_new_requests_get_a_json_503_while_draining(shutdowns: dict[str, Outcome[Any]]) -> None:
    during, finished = shutdowns["in flight"].get()

    # Either uvicorn closed the idle connection first (nothing sent), or the guard refused it with a JSON 503.
    if during:
        status, headers, answer = status_and_json(during)
        assert (status, headers["content-type"]) == (503, "application/json")
        assert "shutting down" in answer["error"]
    assert finished.startswith(b"HTTP/1.1 200 ")  # the request in flight finished within the drain time


# --- 5: any string is a valid V2 request id --------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc\r\nX: 1", "nul\x00byte", "ïd-✓", "tab\there"])
def test_a_v2_request_id_that_is_no_header_value_is_echoed_in_the_body(
    capped_server: ServerProcess, request_id: str
) -> None:
    request: dict[str, Any] = {
        "id": request_id,
        "inputs": [{"name": "bodies", "datatype": "BYTES", "shape": [1], "data": ["a b c"]}],
    }

    response = requests.post(capped_server.url + V2_INFER, json=request, timeout=60)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == request_id
    assert "\r" not in response.headers.get("ce-id", "") and "\n" not in response.headers.get("ce-id", "")
    assert "x" not in {name.lower() for name in response.headers}


# --- 10: gzip bodies are a series of members --------------------------------------------------------------------


def test_a_multi_member_gzip_body_is_decoded_whole(capped_server: ServerProcess) -> None:
    payload = json.dumps({"data": {"ndarray": [["first body"], ["second body"]]}}).encode()
    body = gzip.compress(payload[:20]) + gzip.compress(payload[20:])
    assert gzip.decompress(body) == payload

    response = requests.post(capped_server.url + SELDON, data=body, timeout=60,
                             headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})  # fmt: skip

    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["ndarray"]) == 2


def test_zero_padding_after_the_last_gzip_member_is_accepted(capped_server: ServerProcess) -> None:
    body = gzip.compress(b'{"data":{"ndarray":[["a body"]]}}') + b"\0" * 16

    response = requests.post(capped_server.url + SELDON, data=body, timeout=60,
                             headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})  # fmt: skip

    assert response.status_code == 200, response.text


def test_trailing_garbage_after_a_gzip_member_is_a_400_that_says_so(capped_server: ServerProcess) -> None:
    body = gzip.compress(b'{"data":{"ndarray":[["a body"]]}}') + b"garbage"

    response = requests.post(capped_server.url + SELDON, data=body, timeout=60,
                             headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})  # fmt: skip

    assert response.status_code == 400
    assert response.json() == {"error": "the gzip body has 7 bytes of trailing data after its last member"}
