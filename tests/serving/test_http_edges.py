"""HTTP at its edges: Content-Encoding lists, bodies that never arrive, early refusals read by Python clients,
and the server's own answers to requests it cannot even parse.

A dedicated server with the echo model (starts in seconds) and the main suite's small limits (262,144 request
bytes), plus a 1 s body timeout, so a stalled body is cut quickly (the two tests of it wait for it; every other
request here sends its whole body at once on 127.0.0.1, or is refused on its headers, far within 1 s). Memory is
read from the server's /proc/<pid>/status (VmHWM: the peak resident size), so a burst that was freed again still
shows.
"""

import gzip
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from tests.serving.serving_harness import LIMITS_ENV, TUTORIAL_PAYLOAD, ServerProcess

SELDON = "/api/v1.0/predictions"
V2_INFER = "/v2/models/issue-summarization/infer"
LIMIT = int(LIMITS_ENV["ISSUE_TITLES_MAX_REQUEST_BYTES"])
BODY_TIMEOUT_S = 1
# 200 MB of spaces: ~200 KB gzipped, under the 262,144-byte wire limit, 800x over it once inflated.
BOMB = gzip.compress(b" " * 200_000_000, compresslevel=9)


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("edge_server")
    env = {**LIMITS_ENV, "ISSUE_TITLES_BODY_TIMEOUT": str(BODY_TIMEOUT_S)}
    server = ServerProcess(folder, folder / "server.log", predictor_loader="fake_predictor:load", env=env)
    with server.running() as process:
        yield process


def peak_memory_mb(server: ServerProcess) -> float:
    for line in open(f"/proc/{server.popen.pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def raw_exchange(server: ServerProcess, data: bytes, wait_s: float = 10.0) -> bytes:
    """Send raw bytes, then read until the server closes the connection (or `wait_s` passes)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as connection:
        connection.sendall(data)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


def split_response(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), answer[:200]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


# --- Content-Encoding is a list (RFC 9110 §8.4) -----------------------------------------------------------------


def post_with_two_encoding_fields(server: ServerProcess, path: str, body: bytes) -> int:
    """POST with `Content-Encoding: identity` and `Content-Encoding: gzip` as two fields (requests would fold them)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: identity\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return split_response(raw_exchange(server, head.encode() + body, wait_s=60))[0]


def test_identity_then_gzip_fields_cannot_smuggle_a_gzip_bomb(edge_server: ServerProcess) -> None:
    # Two Content-Encoding fields mean "identity, gzip": the body is gzip, and the bound applies to it.
    peak_before = peak_memory_mb(edge_server)

    statuses = [post_with_two_encoding_fields(edge_server, V2_INFER, BOMB) for _ in range(3)]

    assert statuses == [413, 413, 413]
    assert peak_memory_mb(edge_server) - peak_before < 50


def test_health_checks_answer_while_gzip_bombs_arrive(edge_server: ServerProcess) -> None:
    done = threading.Event()

    def send_bombs() -> None:
        try:
            for _ in range(4):
                post_with_two_encoding_fields(edge_server, SELDON, BOMB)
        finally:
            done.set()

    sender = threading.Thread(target=send_bombs)
    sender.start()
    slowest = 0.0
    while not done.is_set():
        started = time.monotonic()
        assert requests.get(edge_server.url + "/v2/health/live", timeout=5).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
    sender.join()

    # Today's figures: 0.07 s; before the fix a health check waited over 5 s (its timeout) behind the gunzip.
    assert slowest < 2


def post_encoded(server: ServerProcess, body: bytes, content_encoding: str) -> requests.Response:
    """A Seldon request whose JSON body was encoded as `content_encoding` says."""
    headers = {"Content-Type": "application/json", "Content-Encoding": content_encoding}
    return requests.post(server.url + SELDON, data=body, headers=headers, timeout=30)


def test_comma_separated_identity_and_gzip_is_decoded(edge_server: ServerProcess) -> None:
    response = post_encoded(edge_server, gzip.compress(TUTORIAL_PAYLOAD.encode()), "identity, gzip")

    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["ndarray"]) == 1


def test_gzip_applied_twice_is_decoded_twice(edge_server: ServerProcess) -> None:
    response = post_encoded(edge_server, gzip.compress(gzip.compress(TUTORIAL_PAYLOAD.encode())), "gzip, gzip")

    assert response.status_code == 200, response.text


def test_more_than_two_gzip_layers_are_415(edge_server: ServerProcess) -> None:
    response = post_encoded(edge_server, gzip.compress(TUTORIAL_PAYLOAD.encode()), ", ".join(["gzip"] * 1000))

    assert response.status_code == 415
    assert response.json() == {"error": "Content-Encoding lists 1000 gzip layers; at most 2 are undone"}


def test_an_unsupported_coding_anywhere_in_the_list_is_415(edge_server: ServerProcess) -> None:
    response = post_encoded(edge_server, gzip.compress(TUTORIAL_PAYLOAD.encode()), "gzip, br")

    assert response.status_code == 415
    assert response.json() == {"error": "Content-Encoding 'br' is not supported; send plain or gzip JSON"}


# --- bodies that never arrive ------------------------------------------------------------------------------------


def test_body_shorter_than_its_content_length_gets_408(edge_server: ServerProcess) -> None:
    started = time.monotonic()
    answer = raw_exchange(
        edge_server,
        f"POST {SELDON} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"data": {"ndarray": [["only part',
    )
    status, headers, body = split_response(answer)

    assert (status, headers["content-type"], headers.get("connection")) == (408, "application/json", "close")
    assert json.loads(body) == {"error": f"the request body did not arrive within {BODY_TIMEOUT_S} s; send it whole"}
    assert time.monotonic() - started < BODY_TIMEOUT_S + 3


def test_chunked_body_without_its_last_chunk_gets_408(edge_server: ServerProcess) -> None:
    answer = raw_exchange(
        edge_server,
        f"POST {V2_INFER} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n".encode()
        + b'{"inputs": [{"na\r\n',
    )

    assert split_response(answer)[0] == 408


# --- early refusals reach Python clients -------------------------------------------------------------------------


@pytest.mark.parametrize("megabytes", [8, 32])
def test_requests_reads_the_413_of_a_body_over_the_limit(edge_server: ServerProcess, megabytes: int) -> None:
    body = b"a" * (megabytes * 1024 * 1024)

    response = requests.post(edge_server.url + SELDON, data=body, timeout=60)

    assert response.status_code == 413
    assert response.json() == {
        "error": f"request body is too large ({len(body)} bytes); at most {LIMIT} bytes are allowed"
    }


@pytest.mark.parametrize("megabytes", [8, 32])
def test_urllib_reads_the_413_of_a_body_over_the_limit(edge_server: ServerProcess, megabytes: int) -> None:
    body = b"a" * (megabytes * 1024 * 1024)

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(edge_server.url + SELDON, data=body), timeout=60)

    assert refused.value.code == 413
    assert json.loads(refused.value.read()) == {
        "error": f"request body is too large ({len(body)} bytes); at most {LIMIT} bytes are allowed"
    }


def test_urllib_reads_the_413_of_a_chunked_body_over_the_limit(edge_server: ServerProcess) -> None:
    chunks = (b" " * 1_048_576 for _ in range(16))
    request = urllib.request.Request(edge_server.url + SELDON, data=chunks, headers={"Transfer-Encoding": "chunked"})

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)

    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"].startswith("request body is too large")


def test_a_client_expecting_100_continue_gets_the_413_without_sending_the_body(edge_server: ServerProcess) -> None:
    # curl sends `Expect: 100-continue` with large bodies: told the final status first, it never sends them.
    answer = raw_exchange(
        edge_server,
        f"POST {SELDON} HTTP/1.1\r\nHost: x\r\nContent-Length: {8 * LIMIT}\r\nExpect: 100-continue\r\n\r\n".encode(),
    )
    status, headers, body = split_response(answer)

    assert (status, headers["connection"]) == (413, "close")
    assert b"100 Continue" not in answer
    assert json.loads(body)["error"].startswith("request body is too large")


def test_connection_is_usable_after_an_early_refusal_of_a_small_body(edge_server: ServerProcess) -> None:
    with requests.Session() as session:
        refused = session.post(edge_server.url + SELDON, data=b"x" * 10, headers={"Content-Encoding": "br"}, timeout=30)
        answered = session.post(edge_server.url + SELDON, data=TUTORIAL_PAYLOAD, timeout=30)

    assert (refused.status_code, answered.status_code) == (415, 200)


# --- requests uvicorn itself refuses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ],
    ids=["not-http", "content-length-not-a-number", "two-content-lengths", "header-without-colon"],
)
def test_unparsable_requests_get_a_json_400(edge_server: ServerProcess, request_bytes: bytes) -> None:
    status, headers, body = split_response(raw_exchange(edge_server, request_bytes))

    assert (status, headers["content-type"], headers["connection"]) == (400, "application/json", "close")
    assert json.loads(body) == {
        "error": "invalid HTTP request: its request line, headers or framing could not be parsed"
    }
