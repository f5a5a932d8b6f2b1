"""Every kind of bad request gets its own exact 4xx status and `{"error": ...}` message, never a 5xx.

The server under test runs with limits from the environment (see `LIMITS_ENV`): 262,144 request bytes,
64 bodies per request, 20,000 characters per body. One table, one row per kind of bad request.
"""

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.serving.serving_harness import ServerProcess

SELDON = "/api/v1.0/predictions"
V2_INFER = "/v2/models/issue-summarization/infer"
EXAMPLE = '{"data": {"ndarray": [["<issue body>"], ...]}}'
MALFORMED = "malformed JSON: "  # followed by the parser's own words
TEN_MEGABYTES = b'{"data": {"ndarray": [["' + b"a" * 10_000_000 + b'"]]}}'
GZIP = {"Content-Encoding": "gzip"}


def v2(data, shape=None, datatype="BYTES", name="bodies") -> dict:
    shape = [len(data)] if shape is None else shape
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


def too_large(size: str) -> str:
    return f"request body is too large ({size}); at most 262144 bytes are allowed"


@dataclass(frozen=True)
class Bad:
    """One bad request and the answer it must get: `error` is the whole message, or its start with `prefix`."""

    path: str
    body: Any  # str or bytes: sent as is (as JSON); dict or list: encoded as JSON; callable: chunks, no length
    status: int
    error: str
    prefix: bool = False
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, http: requests.Session, server: ServerProcess) -> requests.Response:
        body = self.body
        if callable(body):
            data: bytes | Iterable[bytes] | None = body()
        elif isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        else:
            data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": "application/json", **self.headers} if data is not None else {}
        return http.request(self.method, server.url + self.path, data=data, headers=headers, timeout=60)


def chunks(count: int, size: int) -> Callable[[], Iterable[bytes]]:
    return lambda: (b" " * size for _ in range(count))  # no Content-Length: the limit is counted while reading


BAD_REQUESTS = {
    # --- Seldon v1
    "seldon malformed JSON": Bad(SELDON, '{"data": {"ndarray": [["unterminated', 400, MALFORMED, prefix=True),
    "seldon empty body": Bad(SELDON, b"", 400, MALFORMED, prefix=True),
    "seldon invalid UTF-8": Bad(SELDON, b'{"data": {"ndarray": [["caf\xe9"]]}}', 400, MALFORMED, prefix=True),
    "seldon lone surrogate": Bad(
        SELDON, '{"data": {"ndarray": [["broken \\ud800 text"]]}}', 400, MALFORMED, prefix=True
    ),
    "seldon non-object request": Bad(
        SELDON, '["a body"]', 400, f"request must be a JSON object like {EXAMPLE}, got array"
    ),
    "seldon missing data": Bad(SELDON, '{"ndarray": [["a body"]]}', 400, f'missing "data": expected {EXAMPLE}'),
    "seldon data not an object": Bad(
        SELDON, '{"data": [["a body"]]}', 400, '"data" must be an object with an "ndarray" list, got array'
    ),
    "seldon tensor instead of ndarray": Bad(
        SELDON,
        '{"data": {"tensor": {"shape": [1], "values": [1.0]}}}',
        400,
        f'missing "data.ndarray" (got tensor): send the issue bodies as {EXAMPLE}',
    ),
    "seldon ndarray not a list": Bad(
        SELDON,
        '{"data": {"ndarray": "a body"}}',
        400,
        '"data.ndarray" must be an array of ["<issue body>"] rows, got string',
    ),
    "seldon empty batch": Bad(
        SELDON, '{"data": {"ndarray": []}}', 400, '"data.ndarray" is empty: send at least one issue body'
    ),
    "seldon non-string element": Bad(
        SELDON,
        '{"data": {"ndarray": [["fine"], [42]]}}',
        400,
        "data.ndarray[1][0] must be a string (the issue body), got number",
    ),
    "seldon null element": Bad(
        SELDON, '{"data": {"ndarray": [[null]]}}', 400, "data.ndarray[0][0] must be a string (the issue body), got null"
    ),
    "seldon row with two columns": Bad(
        SELDON,
        '{"data": {"ndarray": [["title?", "body"]]}}',
        400,
        'data.ndarray[0] must be one ["<issue body>"] row, got an array of 2 items',
    ),
    "seldon nested too deep": Bad(
        SELDON,
        '{"data": {"ndarray": [[["a body"]]]}}',
        400,
        "data.ndarray[0][0] must be a string (the issue body), got array",
    ),
    "seldon blank body": Bad(
        SELDON,
        '{"data": {"ndarray": [[" \\n\\t "]]}}',
        400,
        "data.ndarray[0][0] is empty: send the text of the issue body",
    ),
    "seldon too many bodies": Bad(
        SELDON,
        {"data": {"ndarray": [["a body"]] * 65}},
        413,
        '"data.ndarray" has 65 bodies; at most 64 are allowed per request',
    ),
    "seldon body over length limit": Bad(
        SELDON,
        {"data": {"ndarray": [["x" * 20_001]]}},
        413,
        "data.ndarray[0][0] has 20001 characters; at most 20000 are allowed per body",
    ),
    # --- any route: size and encoding
    **{
        f"over size limit on {path}": Bad(path, b" " * 300_000, 413, too_large("300000 bytes"))
        for path in (SELDON, V2_INFER, "/predict")
    },
    "ten megabytes": Bad(SELDON, TEN_MEGABYTES, 413, too_large(f"{len(TEN_MEGABYTES)} bytes")),
    "chunked over size limit": Bad(SELDON, chunks(8, 65_536), 413, too_large("more than 262144 bytes")),
    "gzip bomb": Bad(
        SELDON,
        gzip.compress(b" " * 5_000_000),
        413,  # ~5 KB on the wire, 5 MB once inflated
        too_large("more than 262144 bytes once decompressed"),
        headers=GZIP,
    ),
    "invalid gzip": Bad(SELDON, b"this is not gzip", 400, "the body is not valid gzip data", headers=GZIP),
    "unsupported content encoding": Bad(
        SELDON,
        b"{}",
        415,
        "Content-Encoding 'br' is not supported; send plain or gzip JSON",
        headers={"Content-Encoding": "br"},
    ),
    # --- V2
    "v2 malformed JSON": Bad(V2_INFER, '{"inputs": [', 400, MALFORMED, prefix=True),
    "v2 empty body": Bad(
        V2_INFER, b"", 400, 'the request body is empty: send a V2 inference request (a JSON object with "inputs")'
    ),
    "v2 missing inputs": Bad(V2_INFER, "{}", 400, "invalid V2 inference request: inputs: Field required"),
    "v2 shape of wrong type": Bad(
        V2_INFER,
        v2(["a body"], shape=["one"]),
        400,
        "invalid V2 inference request: inputs.0.shape.0: Input should be a valid integer, "
        "unable to parse string as an integer",
    ),
    "v2 wrong datatype": Bad(
        V2_INFER, v2([1.5], datatype="FP32"), 400, 'input "bodies" must have datatype BYTES, got FP32'
    ),
    "v2 wrong shape": Bad(
        V2_INFER,
        v2(["a", "b", "c", "d", "e", "f"], shape=[2, 3]),
        400,
        'input "bodies" must have shape [N] or [N, 1], got [2, 3]',
    ),
    "v2 shape not matching data": Bad(
        V2_INFER, v2(["a body"], shape=[2]), 400, 'input "bodies" has shape [2] but 1 elements'
    ),
    "v2 non-string element": Bad(
        V2_INFER,
        v2(["a body", {"text": "b"}]),
        400,
        'input "bodies" data[1] must be a string (the issue body), got object',
    ),
    "v2 data not a list": Bad(
        V2_INFER, v2("a body", shape=[1]), 400, 'input "bodies" data must be an array of strings, got string'
    ),
    "v2 empty batch": Bad(V2_INFER, v2([]), 400, 'input "bodies" is empty: send at least one issue body'),
    "v2 unknown input name": Bad(
        V2_INFER, v2(["a body"], name="text"), 400, 'unknown input "text": expected one BYTES input named "bodies"'
    ),
    "v2 two inputs": Bad(
        V2_INFER,
        {"inputs": v2(["a"])["inputs"] * 2},
        400,
        'expected exactly one input named "bodies" (BYTES), got 2 inputs',
    ),
    "v2 too many bodies": Bad(
        V2_INFER, v2(["a body"] * 65), 413, 'input "bodies" has 65 bodies; at most 64 are allowed per request'
    ),
    "v2 body over length limit": Bad(
        V2_INFER,
        v2(["y" * 20_001]),
        413,
        'input "bodies" data[0] has 20001 characters; at most 20000 are allowed per body',
    ),
    "v2 unknown model": Bad("/v2/models/other-model/infer", v2(["a body"]), 404, "Model other-model not found"),
    # --- routes that must not be usable
    "model repository API": Bad(
        "/v2/repository/models/issue-summarization/unload",
        None,
        403,
        "the model repository API is disabled on this server",
    ),
    "streaming inference": Bad(
        "/v2/models/issue-summarization/infer_stream",
        v2(["a"]),
        404,
        "streaming inference is not supported; use /infer",
    ),
    "unknown path": Bad("/no/such/path", None, 404, "Not Found", method="GET"),
    "wrong method": Bad(SELDON, None, 405, "Method Not Allowed", method="GET"),
}


@pytest.mark.parametrize("bad", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_its_status_and_json_error(server: ServerProcess, http: requests.Session, bad: Bad) -> None:
    response = bad.send(http, server)

    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    if bad.prefix:
        assert response.json()["error"].startswith(bad.error)
    else:
        assert response.json() == {"error": bad.error}


def test_the_server_stays_ready_after_a_refused_model_repository_call(
    server: ServerProcess, http: requests.Session
) -> None:
    assert BAD_REQUESTS["model repository API"].send(http, server).status_code == 403
    assert http.get(server.url + "/v2/health/ready", timeout=10).status_code == 200
