"""Every kind of bad request gets its own exact 4xx status and `{"error": ...}` message, never a 5xx.

The server under test runs with limits from the environment (see `LIMITS_ENV`): 262,144 request bytes,
64 bodies per request, 20,000 characters per body.
"""

import gzip

import pytest
import requests

from tests.serving.serving_harness import ServerProcess

SELDON = "/api/v1.0/predictions"
V2_INFER = "/v2/models/issue-summarization/infer"
EXAMPLE = '{"data": {"ndarray": [["<issue body>"], ...]}}'


def post(http: requests.Session, server: ServerProcess, path: str, body: bytes | str, **headers: str):
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/json", **headers}
    return http.post(server.url + path, data=data, headers=headers, timeout=60)


def v2(data, shape=None, datatype="BYTES", name="bodies") -> dict:
    shape = [len(data)] if shape is None else shape
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


def assert_error(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": message}


# --- Seldon v1 ------------------------------------------------------------------------------------------------


def test_seldon_malformed_json_is_400(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, SELDON, '{"data": {"ndarray": [["unterminated')

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON: ")


def test_seldon_empty_body_is_400(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, SELDON, b"")

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON: ")


def test_seldon_invalid_utf8_is_400(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, SELDON, b'{"data": {"ndarray": [["caf\xe9"]]}}')

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON: ")


def test_seldon_lone_surrogate_is_400(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, SELDON, '{"data": {"ndarray": [["broken \\ud800 text"]]}}')

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON: ")


def test_seldon_non_object_request_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '["a body"]'), 400, f"request must be a JSON object like {EXAMPLE}, got array"
    )


def test_seldon_missing_data_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(post(http, server, SELDON, '{"ndarray": [["a body"]]}'), 400, f'missing "data": expected {EXAMPLE}')


def test_seldon_data_not_an_object_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": [["a body"]]}'),
        400,
        '"data" must be an object with an "ndarray" list, got array',
    )


def test_seldon_tensor_instead_of_ndarray_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"tensor": {"shape": [1], "values": [1.0]}}}'),
        400,
        f'missing "data.ndarray" (got tensor): send the issue bodies as {EXAMPLE}',
    )


def test_seldon_ndarray_not_a_list_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": "a body"}}'),
        400,
        '"data.ndarray" must be an array of ["<issue body>"] rows, got string',
    )


def test_seldon_empty_batch_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": []}}'),
        400,
        '"data.ndarray" is empty: send at least one issue body',
    )


def test_seldon_non_string_element_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": [["fine"], [42]]}}'),
        400,
        "data.ndarray[1][0] must be a string (the issue body), got number",
    )


def test_seldon_null_element_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": [[null]]}}'),
        400,
        "data.ndarray[0][0] must be a string (the issue body), got null",
    )


def test_seldon_row_with_two_columns_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": [["title?", "body"]]}}'),
        400,
        'data.ndarray[0] must be one ["<issue body>"] row, got an array of 2 items',
    )


def test_seldon_nested_too_deep_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": [[["a body"]]]}}'),
        400,
        "data.ndarray[0][0] must be a string (the issue body), got array",
    )


def test_seldon_blank_body_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, SELDON, '{"data": {"ndarray": [[" \\n\\t "]]}}'),
        400,
        "data.ndarray[0][0] is empty: send the text of the issue body",
    )


def test_seldon_too_many_bodies_is_413(server: ServerProcess, http: requests.Session) -> None:
    payload = {"data": {"ndarray": [["a body"]] * 65}}

    response = http.post(server.url + SELDON, json=payload, timeout=60)

    assert_error(response, 413, '"data.ndarray" has 65 bodies; at most 64 are allowed per request')


def test_seldon_body_over_length_limit_is_413(server: ServerProcess, http: requests.Session) -> None:
    payload = {"data": {"ndarray": [["x" * 20_001]]}}

    response = http.post(server.url + SELDON, json=payload, timeout=60)

    assert_error(response, 413, "data.ndarray[0][0] has 20001 characters; at most 20000 are allowed per body")


# --- any route: size and encoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [SELDON, V2_INFER, "/predict"])
def test_request_over_size_limit_is_413(server: ServerProcess, http: requests.Session, path: str) -> None:
    response = post(http, server, path, b" " * 300_000)

    assert_error(response, 413, "request body is too large (300000 bytes); at most 262144 bytes are allowed")


def test_ten_megabyte_request_is_413(server: ServerProcess, http: requests.Session) -> None:
    body = b'{"data": {"ndarray": [["' + b"a" * 10_000_000 + b'"]]}}'

    response = post(http, server, SELDON, body)

    assert_error(response, 413, f"request body is too large ({len(body)} bytes); at most 262144 bytes are allowed")


def test_chunked_request_over_size_limit_is_413(server: ServerProcess, http: requests.Session) -> None:
    chunks = (b" " * 65_536 for _ in range(8))  # no Content-Length: the limit is counted while reading

    response = http.post(server.url + SELDON, data=chunks, headers={"Content-Type": "application/json"}, timeout=60)

    assert_error(response, 413, "request body is too large (more than 262144 bytes); at most 262144 bytes are allowed")


def test_gzip_bomb_is_413(server: ServerProcess, http: requests.Session) -> None:
    bomb = gzip.compress(b" " * 5_000_000)  # ~5 KB on the wire, 5 MB once inflated

    response = post(http, server, SELDON, bomb, **{"Content-Encoding": "gzip"})

    assert_error(
        response,
        413,
        "request body is too large (more than 262144 bytes once decompressed); at most 262144 bytes are allowed",
    )


def test_invalid_gzip_is_400(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, SELDON, b"this is not gzip", **{"Content-Encoding": "gzip"})

    assert_error(response, 400, "the body is not valid gzip data")


def test_unsupported_content_encoding_is_415(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, SELDON, b"{}", **{"Content-Encoding": "br"})

    assert_error(response, 415, "Content-Encoding 'br' is not supported; send plain or gzip JSON")


# --- V2 -------------------------------------------------------------------------------------------------------


def test_v2_malformed_json_is_400(server: ServerProcess, http: requests.Session) -> None:
    response = post(http, server, V2_INFER, '{"inputs": [')

    assert response.status_code == 400
    assert response.json()["error"].startswith("malformed JSON: ")


def test_v2_empty_body_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, V2_INFER, b""),
        400,
        'the request body is empty: send a V2 inference request (a JSON object with "inputs")',
    )


def test_v2_missing_inputs_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        post(http, server, V2_INFER, "{}"),
        400,
        "invalid V2 inference request: inputs: Field required",
    )


def test_v2_shape_of_wrong_type_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["a body"], shape=["one"]), timeout=60),
        400,
        "invalid V2 inference request: inputs.0.shape.0: Input should be a valid integer, "
        "unable to parse string as an integer",
    )


def test_v2_wrong_datatype_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2([1.5], datatype="FP32"), timeout=60),
        400,
        'input "bodies" must have datatype BYTES, got FP32',
    )


def test_v2_wrong_shape_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["a", "b", "c", "d", "e", "f"], shape=[2, 3]), timeout=60),
        400,
        'input "bodies" must have shape [N] or [N, 1], got [2, 3]',
    )


def test_v2_shape_not_matching_data_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["a body"], shape=[2]), timeout=60),
        400,
        'input "bodies" has shape [2] but 1 elements',
    )


def test_v2_non_string_element_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["a body", {"text": "b"}]), timeout=60),
        400,
        'input "bodies" data[1] must be a string (the issue body), got object',
    )


def test_v2_data_not_a_list_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2("a body", shape=[1]), timeout=60),
        400,
        'input "bodies" data must be an array of strings, got string',
    )


def test_v2_empty_batch_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2([]), timeout=60),
        400,
        'input "bodies" is empty: send at least one issue body',
    )


def test_v2_unknown_input_name_is_400(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["a body"], name="text"), timeout=60),
        400,
        'unknown input "text": expected one BYTES input named "bodies"',
    )


def test_v2_two_inputs_is_400(server: ServerProcess, http: requests.Session) -> None:
    payload = {"inputs": v2(["a"])["inputs"] * 2}

    assert_error(
        http.post(server.url + V2_INFER, json=payload, timeout=60),
        400,
        'expected exactly one input named "bodies" (BYTES), got 2 inputs',
    )


def test_v2_too_many_bodies_is_413(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["a body"] * 65), timeout=60),
        413,
        'input "bodies" has 65 bodies; at most 64 are allowed per request',
    )


def test_v2_body_over_length_limit_is_413(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + V2_INFER, json=v2(["y" * 20_001]), timeout=60),
        413,
        'input "bodies" data[0] has 20001 characters; at most 20000 are allowed per body',
    )


def test_v2_unknown_model_is_404(server: ServerProcess, http: requests.Session) -> None:
    assert_error(
        http.post(server.url + "/v2/models/other-model/infer", json=v2(["a body"]), timeout=60),
        404,
        "Model other-model not found",
    )


# --- routes that must not be usable ---------------------------------------------------------------------------


def test_model_repository_api_is_refused(server: ServerProcess, http: requests.Session) -> None:
    response = http.post(server.url + "/v2/repository/models/issue-summarization/unload", timeout=10)

    assert_error(response, 403, "the model repository API is disabled on this server")
    assert http.get(server.url + "/v2/health/ready", timeout=10).status_code == 200


def test_streaming_inference_is_refused(server: ServerProcess, http: requests.Session) -> None:
    response = http.post(server.url + "/v2/models/issue-summarization/infer_stream", json=v2(["a"]), timeout=10)

    assert_error(response, 404, "streaming inference is not supported; use /infer")


def test_unknown_path_is_json_404(server: ServerProcess, http: requests.Session) -> None:
    assert_error(http.get(server.url + "/no/such/path", timeout=10), 404, "Not Found")


def test_wrong_method_is_json_405(server: ServerProcess, http: requests.Session) -> None:
    assert_error(http.get(server.url + SELDON, timeout=10), 405, "Method Not Allowed")
