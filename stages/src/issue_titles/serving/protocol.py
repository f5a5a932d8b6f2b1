"""Wire formats of the model server, as pure functions: request -> list of bodies, titles -> response.

Every way a request can be wrong ends here as a `RequestRejected` (an `MLServerError`, so MLServer's own
exception handler turns it into `{"error": "<message>"}` with our status code) that names the offending
field, instead of surfacing later as a 500 from deep inside the model.
"""

import types
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput

from .limits import ServingLimits
from .settings import INPUT_NAME, OUTPUT_NAME

SELDON_OUTPUT_NAMES = ["t:0"]
SELDON_EXAMPLE = '{"data": {"ndarray": [["<issue body>"], ...]}}'


class RequestRejected(MLServerError):
    """A request the server will not run through the model; carries the HTTP status to answer with."""


class BadRequest(RequestRejected):
    def __init__(self, message: str):
        super().__init__(message, status_code=400)


class PayloadTooLarge(RequestRejected):
    def __init__(self, message: str):
        super().__init__(message, status_code=413)


# Python type -> JSON name, in this order (bool before number: a bool is an int in Python).
_JSON_TYPES: tuple[tuple[type | types.UnionType, str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    (int | float, "number"),
    (str, "string"),
    (bytes, "bytes"),
    (list | tuple, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages a client can act on."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (valid UTF-8, no lone surrogates, bounded nesting) or a 400 saying where it broke."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"malformed JSON: {error}") from None


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def seldon_payload(raw: bytes, content_type: str | None, query_string: bytes = b"") -> Any:
    """The Seldon request in a body: JSON, or the form field `json=` (or `?json=`) the Seldon Python wrapper took.

    seldon-core 1.17.1's `SeldonClient.microservice` posts `data={"json": ...}` (form-urlencoded, seldon_client.py
    `microservice_api_rest_seldon_message`), which its wrapper read with `request.form.get("json")` after
    `request.args.get("json")` (flask_utils.py `get_request`). A body that is a JSON object stays JSON even with a
    form Content-Type (`curl -d` sends one), so a body text containing "&json=" is never mistaken for a form.
    """
    if raw.lstrip()[:1] in (b"{", b"["):
        return parse_json(raw)
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    fields = {}
    if media_type == FORM_CONTENT_TYPE:
        fields = _form_fields(raw, "the form body")
    if "json" not in fields and query_string:
        fields = _form_fields(query_string, "the query string")
    if "json" in fields:
        return parse_json(fields["json"].encode("utf-8"))
    return parse_json(raw)


def _form_fields(encoded: bytes, where: str) -> dict[str, str]:
    try:
        text = encoded.decode("ascii")
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=100))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"{where} is not valid form data: send JSON, or the form field json=<JSON>") from None


def check_body(value: Any, where: str, limits: ServingLimits | None) -> str:
    """One issue body: a non-empty string the tokenizer can encode, within the length limit."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{where} is not valid UTF-8 text") from None
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a string (the issue body), got {json_type(value)}")
    if limits is not None and len(value) > limits.max_body_chars:
        raise PayloadTooLarge(
            f"{where} has {len(value)} characters; at most {limits.max_body_chars} are allowed per body"
        )
    if not value.strip():
        raise BadRequest(f"{where} is empty: send the text of the issue body")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{where} is not valid Unicode text (it contains a lone surrogate)") from None
    return value


def check_batch_size(count: int, where: str, limits: ServingLimits | None) -> None:
    if count == 0:
        raise BadRequest(f"{where} is empty: send at least one issue body")
    if limits is not None and count > limits.max_batch_bodies:
        raise PayloadTooLarge(f"{where} has {count} bodies; at most {limits.max_batch_bodies} are allowed per request")


def bodies_from_seldon(payload: Any, limits: ServingLimits | None) -> list[str]:
    """`{"data": {"ndarray": [["body"], ...]}}` (rows of one string; bare strings accepted too) -> bodies."""
    if not isinstance(payload, dict):
        raise BadRequest(f"request must be a JSON object like {SELDON_EXAMPLE}, got {json_type(payload)}")
    if "data" not in payload:
        raise BadRequest(f'missing "data": expected {SELDON_EXAMPLE}')
    data = payload["data"]
    if not isinstance(data, dict):
        raise BadRequest(f'"data" must be an object with an "ndarray" list, got {json_type(data)}')
    if "ndarray" not in data:
        others = ", ".join(sorted(str(key) for key in data)) or "nothing"
        raise BadRequest(f'missing "data.ndarray" (got {others}): send the issue bodies as {SELDON_EXAMPLE}')
    rows = data["ndarray"]
    if not isinstance(rows, list):
        raise BadRequest(f'"data.ndarray" must be an array of ["<issue body>"] rows, got {json_type(rows)}')
    check_batch_size(len(rows), '"data.ndarray"', limits)
    bodies = []
    for index, row in enumerate(rows):
        where = f"data.ndarray[{index}]"
        if isinstance(row, list):
            if len(row) != 1:
                raise BadRequest(f'{where} must be one ["<issue body>"] row, got an array of {len(row)} items')
            row, where = row[0], f"{where}[0]"
        bodies.append(check_body(row, where, limits))
    return bodies


def seldon_response(titles: Sequence[str], puid: str | None = None) -> dict[str, Any]:
    """The tutorial's Seldon answer: one `[title]` row per body, in order."""
    return {
        "data": {"names": list(SELDON_OUTPUT_NAMES), "ndarray": [[title] for title in titles]},
        "meta": {"puid": puid or uuid.uuid4().hex, "tags": {}, "routing": {}},
    }


def bodies_from_v2(request: InferenceRequest, limits: ServingLimits | None) -> list[str]:
    """One BYTES input `bodies` of shape [N] or [N, 1] (flat or nested data) -> N bodies."""
    inputs = request.inputs
    if len(inputs) != 1:
        raise BadRequest(f'expected exactly one input named "{INPUT_NAME}" (BYTES), got {len(inputs)} inputs')
    tensor = inputs[0]
    if tensor.name != INPUT_NAME:
        raise BadRequest(f'unknown input "{tensor.name}": expected one BYTES input named "{INPUT_NAME}"')
    where = f'input "{INPUT_NAME}"'
    datatype = getattr(tensor.datatype, "value", tensor.datatype)
    if datatype != "BYTES":
        raise BadRequest(f"{where} must have datatype BYTES, got {datatype}")
    shape = list(tensor.shape)
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 0:
        raise BadRequest(f"{where} must have shape [N] or [N, 1], got {shape}")
    data = tensor.data.root if hasattr(tensor.data, "root") else tensor.data
    if not isinstance(data, list):
        raise BadRequest(f"{where} data must be an array of strings, got {json_type(data)}")
    flat: list[Any] = []
    for index, item in enumerate(data):
        if isinstance(item, list):
            if len(item) != 1:
                raise BadRequest(f"{where} data[{index}] must be one string or [string], got an array of {len(item)}")
            item = item[0]
        flat.append(item)
    if len(flat) != shape[0]:
        raise BadRequest(f"{where} has shape {shape} but {len(flat)} elements")
    check_batch_size(len(flat), where, limits)
    return [check_body(item, f"{where} data[{index}]", limits) for index, item in enumerate(flat)]


def v2_request(bodies: Sequence[str], request_id: str | None = None) -> InferenceRequest:
    """A clean request holding only checked bodies: what MLServer's adaptive batcher merges."""
    return InferenceRequest(
        id=request_id,
        inputs=[RequestInput(name=INPUT_NAME, datatype="BYTES", shape=[len(bodies)], data=list(bodies))],
    )


def v2_response(titles: Sequence[str], model_name: str, model_version: str | None) -> InferenceResponse:
    """Titles as UTF-8 bytes: gRPC needs bytes for BYTES tensors, and REST writes them back as JSON strings."""
    data = [title.encode("utf-8") for title in titles]
    return InferenceResponse(
        model_name=model_name,
        model_version=model_version,
        outputs=[ResponseOutput(name=OUTPUT_NAME, datatype="BYTES", shape=[len(data)], data=data)],
    )


def titles_from_v2(response: InferenceResponse) -> list[str]:
    output = next(output for output in response.outputs if output.name == OUTPUT_NAME)
    data = output.data.root if hasattr(output.data, "root") else output.data
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in data]
