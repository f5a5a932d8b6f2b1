"""2,000+ malformed or hostile requests against the real server: only 2xx/4xx JSON answers, bounded memory.

Two generators feed one run against `stages serve` with its default limits:
- the serving suite's hand-written hostile requests (random bytes and JSON, wrong types and shapes, nesting up to
  5,000 deep, a 10 MB body, a batch of 10,000, invalid UTF-8, lone surrogates, NUL and control characters,
  right-to-left text, emoji, code blocks, gzip bombs), here also sent chunked;
- requests generated from the server's own OpenAPI document (`GET /v2/docs/dataplane.json`): schema-valid V2
  inference requests with every datatype, shape and parameter the schema allows, on every POST route it lists.
The limits themselves are checked at their documented boundaries.
"""

from collections import Counter
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from issue_titles.serving.limits import ServingLimits
from tests.reliability.conftest import resident_memory_mb
from tests.serving.serving_harness import TUTORIAL_PAYLOAD, ServerProcess
from tests.serving.test_fuzz import hostile_requests

HOSTILE_EXAMPLES = 1_600
OPENAPI_EXAMPLES = 500
MODEL = "issue-summarization"
LIMITS = ServingLimits()
# What a fuzz run may add to the server's resident memory after warm-up. The server holds TensorFlow (~0.5 GB);
# a retained request body would add up to 4 MB per request, a 10 KB-per-request leak ~20 MB.
MAX_GROWTH_MB = 100
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def check_answer(response: requests.Response, statuses: Counter) -> dict[str, Any]:
    """The contract for every answer: 2xx or 4xx, a JSON object, and a non-empty message with every 4xx."""
    statuses[response.status_code] += 1
    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500, (
        response.status_code,
        response.text[:500],
    )
    answer = response.json()
    assert isinstance(answer, dict), answer
    if response.status_code >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"].strip(), answer
    return answer


def chunked(body: bytes, size: int):
    """The same body sent with Transfer-Encoding: chunked (no Content-Length for the guard to trust)."""
    return (body[start : start + size] for start in range(0, max(len(body), 1), size))


@st.composite
def hostile_or_chunked(draw) -> tuple[str, Any, dict[str, str], list[str] | None]:
    route, body, headers, expected = draw(hostile_requests())
    # Over-limit bodies stay whole: the server answers 413 and closes mid-upload, which a chunked client sees as a
    # reset connection rather than an answer (tests/serving checks that case on its own).
    if len(body) <= LIMITS.max_request_bytes and draw(st.integers(0, 4)) == 0:
        size = draw(st.sampled_from([1, 7, 4096, 1 << 20])) if len(body) < 100_000 else 1 << 20
        return route, chunked(body, size), headers, expected
    return route, body, headers, expected


def from_openapi_schema(schema: dict, components: dict, depth: int = 0) -> st.SearchStrategy:
    """Values valid for the subset of OpenAPI 3 schema the MLServer document uses ($ref, object, array, oneOf,
    enum, string, integer, number, boolean, and OpenAPI's "bytes"). Unconstrained parts get arbitrary JSON."""
    if "$ref" in schema:
        kind, name = schema["$ref"].split("/")[-2:]
        return st.deferred(lambda: from_openapi_schema(components[kind][name], components, depth + 1))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([from_openapi_schema(option, components, depth) for option in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {name: from_openapi_schema(sub, components, depth + 1) for name, sub in properties.items()
                 if name in required}  # fmt: skip
        optional = {name: from_openapi_schema(sub, components, depth + 1) for name, sub in properties.items()
                    if name not in required}  # fmt: skip
        strategy = st.fixed_dictionaries(fixed, optional=optional)
        if schema.get("additionalProperties") is True:
            extra = st.dictionaries(st.text(max_size=10), ANY_JSON, max_size=3)
            strategy = st.tuples(strategy, extra).map(lambda pair: {**pair[1], **pair[0]})
        return strategy
    if kind == "array":
        items = from_openapi_schema(schema["items"], components, depth + 1) if "items" in schema else ANY_JSON
        return st.lists(items, max_size=6)
    if kind in ("string", "bytes"):  # "bytes" travels as a (base64) string in JSON
        return st.text(max_size=40)
    if kind == "integer":
        return st.integers(-(2**40), 2**40)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return ANY_JSON


ANY_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)


def openapi_requests(document: dict) -> st.SearchStrategy:
    """(url path, JSON body): a POST route of the document with its path parameters filled, a schema-valid body."""
    components = document.get("components", {})
    names = st.sampled_from([MODEL, MODEL, MODEL, "other-model", "..%2F..%2Fetc", "%00", "ü"])
    versions = st.sampled_from(["1", "v0", "%2e%2e"])
    operations = []
    for path, methods in document["paths"].items():
        post = methods.get("post") if isinstance(methods, dict) else None
        if post:
            schema = post["requestBody"]["content"]["application/json"]["schema"]
            # The route clients use gets most draws; the versioned and streaming twins a share each.
            weight = 6 if path == "/v2/models/{model_name}/infer" else 1
            operations += weight * [
                st.tuples(st.just(path), names, versions, from_openapi_schema(schema, components)).map(
                    lambda drawn: (
                        drawn[0].replace("{model_name}", drawn[1]).replace("{model_version}", drawn[2]),
                        drawn[3],
                    )
                )
            ]
    assert operations, "the server's OpenAPI document lists no POST operation"
    return st.one_of(operations)


def warm_up(server: ServerProcess, http: requests.Session) -> None:
    """Valid requests of every size up to the limits, so the allocator's pools exist before memory is measured."""
    sizes = [(1, 100), (16, 2_000), (LIMITS.max_batch_bodies, 200), (2, LIMITS.max_body_chars), (64, 30_000)]
    for count, length in sizes:
        bodies = [("fix crash in parser " * (length // 20 + 1))[:length] for _ in range(count)]
        payload = {"data": {"ndarray": [[body] for body in bodies]}}
        response = http.post(server.url + "/api/v1.0/predictions", json=payload, timeout=120)
        assert response.status_code == 200, response.text[:300]


def test_2000_hostile_requests_get_json_2xx_or_4xx_memory_stays_bounded_and_good_requests_still_work(
    default_server: ServerProcess, http: requests.Session
) -> None:
    server = default_server
    process = server.process
    assert process is not None
    document = http.get(server.url + "/v2/docs/dataplane.json", timeout=30).json()
    warm_up(server, http)
    memory_before = resident_memory_mb(process.pid)
    statuses: Counter = Counter()

    @settings(FUZZ_SETTINGS, max_examples=HOSTILE_EXAMPLES)
    @given(request=hostile_or_chunked())
    def hostile(request) -> None:
        route, body, headers, expected = request
        answer = check_answer(http.post(server.url + route, data=body, headers=headers, timeout=60), statuses)
        if expected is not None:
            titles = answer["outputs"][0]["data"] if "outputs" in answer else [r[0] for r in answer["data"]["ndarray"]]
            assert len(titles) == len(expected) and all(isinstance(t, str) and t.strip() for t in titles)

    @settings(FUZZ_SETTINGS, max_examples=OPENAPI_EXAMPLES)
    @given(request=openapi_requests(document))
    def schema_valid(request) -> None:
        path, body = request
        check_answer(http.post(server.url + path, json=body, timeout=60), statuses)

    hostile()
    memory_middle = resident_memory_mb(process.pid)
    schema_valid()
    memory_after = resident_memory_mb(process.pid)

    fuzzed = sum(statuses.values())
    print(
        f"\nfuzzed {fuzzed} requests; answers by status {dict(sorted(statuses.items()))}; server RSS "
        f"{memory_before:.0f} MB -> {memory_middle:.0f} MB -> {memory_after:.0f} MB"
    )
    assert fuzzed >= 2_000
    assert statuses[200] >= 100 and statuses[400] >= 500 and statuses[413] > 0  # every kind of answer was hit
    assert process.poll() is None, server.log()[-3000:]
    good = http.post(server.url + "/api/v1.0/predictions", data=TUTORIAL_PAYLOAD, timeout=60)
    assert good.status_code == 200 and good.json()["data"]["ndarray"][0][0].strip()
    assert memory_after - memory_before < MAX_GROWTH_MB, (memory_before, memory_middle, memory_after)


@pytest.mark.parametrize(
    ("bodies", "status"),
    [
        pytest.param([["a b c"]] * LIMITS.max_batch_bodies, 200, id="max_batch_bodies"),
        pytest.param([["a b c"]] * (LIMITS.max_batch_bodies + 1), 413, id="max_batch_bodies+1"),
        pytest.param([["x " * (LIMITS.max_body_chars // 2)]], 200, id="max_body_chars"),
        pytest.param([["x " * (LIMITS.max_body_chars // 2) + "y"]], 413, id="max_body_chars+1"),
    ],
)
def test_batch_and_body_limits_hold_exactly_at_their_defaults(
    default_server: ServerProcess, http: requests.Session, bodies: list, status: int
) -> None:
    response = http.post(default_server.url + "/api/v1.0/predictions", json={"data": {"ndarray": bodies}}, timeout=60)

    assert response.status_code == status, response.text[:300]
    if status == 200:
        assert len(response.json()["data"]["ndarray"]) == len(bodies)
    else:
        assert "at most" in response.json()["error"]


@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)], ids=["max_request_bytes", "max_request_bytes+1"])
def test_request_size_limit_holds_exactly_at_its_default(
    default_server: ServerProcess, http: requests.Session, extra: int, status: int
) -> None:
    prefix, suffix = b'{"data": {"ndarray": [["a body"]]}', b"}"
    padding = b" " * (LIMITS.max_request_bytes - len(prefix) - len(suffix) + extra)  # JSON whitespace

    response = http.post(default_server.url + "/api/v1.0/predictions", data=prefix + padding + suffix, timeout=60)

    assert response.status_code == status, response.text[:300]
