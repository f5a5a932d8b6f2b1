"""Hostile traffic against a real server: every answer is a 2xx or a 4xx JSON message, and it keeps working.

Hypothesis generates malformed JSON, wrong types and shapes, deep nesting, huge and gzip-bombed bodies, big
batches, invalid UTF-8, lone surrogates, NUL/control characters, right-to-left text, emoji and code blocks,
sent to every prediction route. The full-size run (2,000+ requests, load) lives in tests/reliability.
"""

import gzip
import json
import string
from collections import Counter
from pathlib import Path

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.serving_harness import LIMITS_ENV, TUTORIAL_PAYLOAD, ServerProcess

FUZZ_EXAMPLES = 400
ROUTES = ["/api/v1.0/predictions", "/api/v0.1/predictions", "/predict", "/v2/models/issue-summarization/infer"]
MAX_REQUEST_BYTES = int(LIMITS_ENV["ISSUE_TITLES_MAX_REQUEST_BYTES"])

HOSTILE_SNIPPETS = [
    "\x00",
    "\x00\x01\x02\x1b[2J",
    "\u202e\u202d\u200f",
    "مرحبا بالعالم",
    "שלום",
    "🔥💥👩‍👩‍👧‍👦🏳️‍🌈",
    "```\nrm -rf / # ```",
    "<script>alert(1)</script>",
    "'; DROP TABLE issues; --",
    "\r\n\r\nHTTP/1.1 200 OK",
    "%s%n%x",
    "\ufeff",
    "\uffff",
    "a" * 5_000,
    " ",
    "",
]


def _encode(value) -> bytes:
    return json.dumps(value).encode()


text = st.one_of(st.text(max_size=120), st.sampled_from(HOSTILE_SNIPPETS), st.text(string.whitespace, max_size=5))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
ndarray_rows = st.lists(st.one_of(st.lists(json_values, max_size=3), json_values), max_size=6)
seldon_like = st.fixed_dictionaries(
    {
        "data": st.one_of(
            st.fixed_dictionaries({"ndarray": ndarray_rows}),
            st.dictionaries(st.sampled_from(["ndarray", "tensor", "names", "strData"]), json_values, max_size=3),
            json_values,
        )
    }
)
v2_like = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["bodies", "text", ""]),
                    "shape": st.one_of(st.lists(st.integers(-2, 8), max_size=3), json_values),
                    "datatype": st.sampled_from(["BYTES", "FP32", "INT64", "bytes", "NONSENSE"]),
                    "data": st.one_of(st.lists(text, max_size=6), json_values),
                }
            ),
            max_size=2,
        )
    },
    optional={"id": json_values, "parameters": json_values, "outputs": json_values},
)

# Valid requests whose bodies are hostile text: these must be answered 200 with one title per body.
hostile_bodies = st.lists(
    st.one_of(st.text(min_size=1, max_size=300), st.sampled_from(HOSTILE_SNIPPETS)).filter(str.strip),
    min_size=1,
    max_size=8,
)
valid_seldon = hostile_bodies.map(
    lambda bodies: ("seldon", bodies, _encode({"data": {"ndarray": [[body] for body in bodies]}}))
)
valid_v2 = hostile_bodies.map(
    lambda bodies: (
        "v2",
        bodies,
        _encode({"inputs": [{"name": "bodies", "shape": [len(bodies)], "datatype": "BYTES", "data": bodies}]}),
    )
)


def _deeply_nested(depth: int) -> bytes:
    return b'{"data": {"ndarray": ' + b"[" * depth + b'"body"' + b"]" * depth + b"}}"


bodies = st.one_of(
    st.binary(max_size=300),  # random bytes, mostly invalid UTF-8 / not JSON
    json_values.map(_encode),
    seldon_like.map(_encode),
    v2_like.map(_encode),
    st.tuples(seldon_like.map(_encode), st.integers(0, 60)).map(lambda pair: pair[0][: pair[1]]),  # truncated
    st.integers(2, 5_000).map(_deeply_nested),
    st.sampled_from(
        [
            b'{"data": {"ndarray": [["caf\xe9 \xff\xfe"]]}}',  # invalid UTF-8 inside a string
            b'{"data": {"ndarray": [["lone \\udc00 surrogate"]]}}',
            _encode({"data": {"ndarray": [["x"]] * 10_000}}),  # a batch of 10,000
            _encode({"data": {"ndarray": [["y" * 30_000]]}}),  # one body over the length limit
            b'{"data": {"ndarray": [["' + b"z" * 10_000_000 + b'"]]}}',  # 10 MB
            b" " * (MAX_REQUEST_BYTES + 1),
        ]
    ),
)


@st.composite
def hostile_requests(draw) -> tuple[str, bytes, dict[str, str], list[str] | None]:
    """(route, body, headers, the bodies when the request is valid and must get one title each)."""
    expected = None
    if draw(st.integers(0, 3)) == 0:  # a quarter of the requests are valid, with hostile text
        kind, expected, body = draw(st.one_of(valid_seldon, valid_v2))
        route = ROUTES[-1] if kind == "v2" else draw(st.sampled_from(ROUTES[:-1]))
    else:
        route, body = draw(st.sampled_from(ROUTES)), draw(bodies)
    content_type = draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
    headers = {"Content-Type": content_type}
    encoding = draw(st.sampled_from([None, None, None, "gzip", "gzip-garbage", "deflate"]))
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding is not None:
        headers["Content-Encoding"] = "gzip" if encoding == "gzip-garbage" else encoding
        expected = None
    return route, body, headers, expected


def resident_memory_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@given(request=hostile_requests())
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
def check_hostile_request(server: ServerProcess, http: requests.Session, statuses: Counter, request) -> None:
    route, body, headers, expected = request

    response = http.post(server.url + route, data=body, headers=headers, timeout=60)
    statuses[response.status_code] += 1

    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500, (response.status_code, response.text)
    answer = response.json()
    assert isinstance(answer, dict)
    if response.status_code >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"]
    if expected is not None:
        assert response.status_code == 200, response.text
        titles = answer["outputs"][0]["data"] if "outputs" in answer else [row[0] for row in answer["data"]["ndarray"]]
        assert len(titles) == len(expected) and all(isinstance(title, str) and title for title in titles)


def test_hostile_requests_get_2xx_or_4xx_json_and_the_server_keeps_working(
    server: ServerProcess, http: requests.Session
) -> None:
    memory_before = resident_memory_kb(server.popen.pid)
    statuses: Counter = Counter()

    check_hostile_request(server, http, statuses)
    print(f"fuzzed {sum(statuses.values())} requests, answers by status: {dict(sorted(statuses.items()))}")

    good = http.post(server.url + "/api/v1.0/predictions", data=TUTORIAL_PAYLOAD, timeout=60)
    assert good.status_code == 200 and good.json()["data"]["ndarray"][0][0].strip()
    assert server.popen.poll() is None
    growth_mb = (resident_memory_kb(server.popen.pid) - memory_before) / 1024
    assert growth_mb < 300, f"server memory grew by {growth_mb:.0f} MB during the fuzz run"
    assert sum(statuses.values()) >= FUZZ_EXAMPLES and statuses[200] >= FUZZ_EXAMPLES // 10
