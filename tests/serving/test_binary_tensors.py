"""The binary tensor data extension's framing, as pure functions (the server tests use the real tritonclient)."""

import struct

import orjson
import pytest

from issue_titles.serving.binary_tensors import (
    BinaryFormatError,
    binary_outputs_wanted,
    decode_request,
    encode_response,
)


def frame(*elements: bytes) -> bytes:
    """BYTES elements as the extension lays them out: 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def binary_request(data: bytes, size: int | None = None, datatype: str = "BYTES") -> tuple[bytes, bytes]:
    size = len(data) if size is None else size
    tensor = {"name": "bodies", "shape": [2], "datatype": datatype, "parameters": {"binary_data_size": size}}
    header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    return header + data, str(len(header)).encode()


def test_bytes_elements_become_the_json_data_list() -> None:
    body, length = binary_request(frame("first ✓".encode(), b""))

    request = orjson.loads(decode_request(body, length))

    assert request["inputs"] == [{"name": "bodies", "shape": [2], "datatype": "BYTES", "data": ["first ✓", ""]}]
    assert request["parameters"] == {"binary_data_output": True}


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (frame(b"abc")[:-1], None, "input 'bodies': element 0 says 3 bytes but 2 are left"),
        (b"\x01\x00", None, "input 'bodies': element 0 is cut off in its 4-byte length"),
        (frame(b"\xff\xfe"), None, "input 'bodies': element 0 is not valid UTF-8 text"),
        (frame(b"abc") + b"extra", 7, "5 bytes of binary data after the last input's binary_data_size"),
        (frame(b"abc"), 99, "input 'bodies': binary_data_size is 99 but only 7 bytes of binary data are left"),
        (frame(b"abc"), -1, "input 'bodies': binary_data_size must be a whole number >= 0, got -1"),
    ],
)
def test_framing_errors_name_the_input_and_the_problem(data: bytes, size: int | None, message: str) -> None:
    body, length = binary_request(data, size)

    with pytest.raises(BinaryFormatError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        decode_request(body, length)


def test_a_binary_tensor_that_is_not_bytes_is_refused() -> None:
    body, length = binary_request(struct.pack("<2f", 1.0, 2.0), datatype="FP32")

    with pytest.raises(BinaryFormatError, match="binary data is read for BYTES tensors only, got datatype 'FP32'"):
        decode_request(body, length)


@pytest.mark.parametrize("length", [b"-1", b"999999", b"ten"])
def test_a_header_length_outside_the_body_is_refused(length: bytes) -> None:
    body, _ = binary_request(frame(b"abc"))

    with pytest.raises(BinaryFormatError, match="Inference-Header-Content-Length"):
        decode_request(body, length)


def test_per_output_binary_data_overrides_the_request_default() -> None:
    request = orjson.dumps(
        {
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "titles", "parameters": {"binary_data": False}}],
        }
    )
    default, per_output = binary_outputs_wanted(request)
    response = orjson.dumps({"outputs": [{"name": "titles", "datatype": "BYTES", "shape": [1], "data": ["a title"]}]})

    assert (default, per_output) == (True, {"titles": False})
    assert encode_response(response, default, per_output) is None  # stays JSON


def test_wanted_bytes_outputs_are_framed_after_the_json() -> None:
    response = orjson.dumps({"outputs": [{"name": "titles", "datatype": "BYTES", "shape": [2], "data": ["a", "bé"]}]})

    encoded = encode_response(response, True, {})

    assert encoded is not None
    body, json_size = encoded

    assert orjson.loads(body[:json_size])["outputs"][0] == {
        "name": "titles",
        "datatype": "BYTES",
        "shape": [2],
        "parameters": {"binary_data_size": 12},
    }
    assert body[json_size:] == frame(b"a", "bé".encode())
