"""The Open Inference Protocol's binary tensor data extension, for BYTES tensors, as pure functions.

`tritonclient.http` (the protocol's reference client) sends inputs this way by default, and asks for binary
outputs unless told otherwise. The format, from triton-inference-server/server docs/protocol/extension_binary_data.md
(also KServe's Open Inference Protocol docs): the body is the JSON request followed by each binary tensor in input
order; the `Inference-Header-Content-Length` header gives the JSON's length; an input sent as binary has
`parameters.binary_data_size` (its byte count) instead of `data`; a BYTES element is a 4-byte little-endian unsigned
length followed by that many bytes. Outputs come back binary when the request says `parameters.binary_data_output`
or, per output, `outputs[i].parameters.binary_data` (which wins); the response is then framed the same way.

MLServer 1.7 knows none of this (its REST route parses the whole body as JSON), so `http_guard` turns a binary
request into the plain JSON one before MLServer sees it, and the JSON response back into the binary one.
"""

import struct
from typing import Any

import orjson

HEADER = b"inference-header-content-length"
_LENGTH = struct.Struct("<I")


class BinaryFormatError(ValueError):
    """The body does not follow the binary tensor data extension; the message says where (a 400)."""


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BinaryFormatError(f"{what} must be a JSON object")
    return value


def decode_request(body: bytes, header_length: bytes) -> bytes:
    """A binary-extension request body -> the same request as plain V2 JSON (BYTES elements as UTF-8 strings)."""
    try:
        json_size = int(header_length)
    except ValueError:
        raise BinaryFormatError("Inference-Header-Content-Length is not a number") from None
    if not 0 <= json_size <= len(body):
        raise BinaryFormatError(
            f"Inference-Header-Content-Length is {json_size} but the body has only {len(body)} bytes"
        )
    try:
        request = _object(orjson.loads(body[:json_size]), "the inference header")
    except orjson.JSONDecodeError as error:
        raise BinaryFormatError(f"malformed JSON in the inference header: {error}") from None
    binary = memoryview(body)[json_size:]
    offset = 0
    inputs = request.get("inputs")
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        tensor = _object(tensor, f"inputs[{index}]")
        parameters = tensor.get("parameters")
        if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
            continue
        name = tensor.get("name", index)
        size = parameters.pop("binary_data_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BinaryFormatError(f"input {name!r}: binary_data_size must be a whole number >= 0, got {size!r}")
        if offset + size > len(binary):
            raise BinaryFormatError(
                f"input {name!r}: binary_data_size is {size} but only {len(binary) - offset} bytes of binary data "
                "are left"
            )
        if tensor.get("datatype") != "BYTES":
            raise BinaryFormatError(
                f"input {name!r}: binary data is read for BYTES tensors only, got datatype {tensor.get('datatype')!r}"
            )
        tensor["data"] = _bytes_elements(binary[offset : offset + size], name)
        offset += size
        if not parameters:
            del tensor["parameters"]
    if offset != len(binary):
        raise BinaryFormatError(f"{len(binary) - offset} bytes of binary data after the last input's binary_data_size")
    return orjson.dumps(request)


def _bytes_elements(data: memoryview, name: Any) -> list[str]:
    elements: list[str] = []
    offset = 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise BinaryFormatError(f"input {name!r}: element {len(elements)} is cut off in its 4-byte length")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise BinaryFormatError(
                f"input {name!r}: element {len(elements)} says {length} bytes but {len(data) - offset} are left"
            )
        try:
            elements.append(bytes(data[offset : offset + length]).decode("utf-8"))
        except UnicodeDecodeError:
            raise BinaryFormatError(f"input {name!r}: element {len(elements)} is not valid UTF-8 text") from None
        offset += length
    return elements


def binary_outputs_wanted(request_json: bytes) -> tuple[bool, dict[str, bool]]:
    """(`binary_data_output` of the request, `binary_data` per named output) of a plain V2 JSON request."""
    try:
        request = orjson.loads(request_json)
    except orjson.JSONDecodeError:
        return False, {}
    if not isinstance(request, dict):
        return False, {}
    parameters = request.get("parameters")
    default = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    per_output: dict[str, bool] = {}
    outputs = request.get("outputs")
    for output in outputs if isinstance(outputs, list) else []:
        if isinstance(output, dict) and isinstance(output.get("parameters"), dict):
            wanted = output["parameters"].get("binary_data")
            if isinstance(wanted, bool) and isinstance(output.get("name"), str):
                per_output[output["name"]] = wanted
    return default, per_output


def encode_response(response_json: bytes, default: bool, per_output: dict[str, bool]) -> tuple[bytes, int] | None:
    """A plain V2 JSON response -> (body, JSON length) with the wanted BYTES outputs as binary; None: leave it."""
    try:
        response = orjson.loads(response_json)
    except orjson.JSONDecodeError:
        return None
    outputs = response.get("outputs") if isinstance(response, dict) else None
    if not isinstance(outputs, list):
        return None
    chunks = []
    for output in outputs:
        if not isinstance(output, dict) or output.get("datatype") != "BYTES":
            continue
        name = output.get("name")
        wanted = per_output.get(name, default) if isinstance(name, str) else default
        if not wanted or not isinstance(output.get("data"), list):
            continue
        binary = b"".join(
            _LENGTH.pack(len(encoded)) + encoded
            for encoded in (str(element).encode("utf-8") for element in output.pop("data"))
        )
        output.setdefault("parameters", {})
        if not isinstance(output["parameters"], dict):
            output["parameters"] = {}
        output["parameters"]["binary_data_size"] = len(binary)
        chunks.append(binary)
    if not chunks:
        return None
    header = orjson.dumps(response)
    return header + b"".join(chunks), len(header)
