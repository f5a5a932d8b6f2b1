"""Good requests on a real server: the tutorial's Seldon request, V2, order, batching, awkward-but-valid text."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.serving.serving_harness import TUTORIAL_PAYLOAD, ServerProcess

V2_INFER = "/v2/models/issue-summarization/infer"
BODIES = [
    "the build fails on windows when the path contains spaces",
    "add dark mode to the settings page please",
    "crash when opening an empty csv file in the importer",
    "documentation for the rest api is out of date",
    "memory leak in the websocket client after reconnect",
]


def seldon_titles(http: requests.Session, server: ServerProcess, bodies: list[str], path="/api/v1.0/predictions"):
    response = http.post(server.url + path, json={"data": {"ndarray": [[body] for body in bodies]}}, timeout=60)
    assert response.status_code == 200, response.text
    return [row[0] for row in response.json()["data"]["ndarray"]]


def post_tutorial_payload(
    http: requests.Session,
    server: ServerProcess,
    path: str = "/api/v1.0/predictions",
    content_type: str = "application/json",
    **headers: str,
) -> requests.Response:
    """The tutorial's curl request: its JSON body, sent as `content_type`, with any other headers."""
    headers = {"Content-Type": content_type, **headers}
    return http.post(server.url + path, data=TUTORIAL_PAYLOAD.encode(), headers=headers, timeout=60)


def v2_titles(http: requests.Session, server: ServerProcess, bodies: list[str]) -> list[str]:
    payload: dict[str, Any] = {
        "inputs": [{"name": "bodies", "shape": [len(bodies)], "datatype": "BYTES", "data": bodies}]
    }
    response = http.post(server.url + V2_INFER, json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def test_tutorial_curl_payload_gets_a_title(server: ServerProcess, http: requests.Session) -> None:
    response = post_tutorial_payload(http, server)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["data"]["names"] == ["t:0"]
    [[title]] = answer["data"]["ndarray"]
    assert isinstance(title, str) and title.strip()
    assert set(answer["meta"]) == {"puid", "tags", "routing"}


@pytest.mark.parametrize("path", ["/api/v0.1/predictions", "/predict"])
def test_other_seldon_paths_answer_like_the_v1_path(server: ServerProcess, http: requests.Session, path: str) -> None:
    assert seldon_titles(http, server, BODIES[:2], path) == seldon_titles(http, server, BODIES[:2])


def test_seldon_executor_puid_is_echoed_in_meta(server: ServerProcess, http: requests.Session) -> None:
    response = post_tutorial_payload(http, server, "/predict", **{"Seldon-Puid": "puid-from-executor"})

    assert response.status_code == 200, response.text
    assert response.json()["meta"]["puid"] == "puid-from-executor"


def test_plain_curl_without_content_type_is_still_json(server: ServerProcess, http: requests.Session) -> None:
    # `curl -d '{...}'` sends application/x-www-form-urlencoded; the body is still the JSON request.
    response = post_tutorial_payload(http, server, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200, response.text


def test_v2_answers_one_title_per_body(server: ServerProcess, http: requests.Session) -> None:
    payload: dict[str, Any] = {"inputs": [{"name": "bodies", "shape": [3], "datatype": "BYTES", "data": BODIES[:3]}]}

    response = http.post(server.url + V2_INFER, json=payload, timeout=60)

    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("titles", "BYTES", [3])
    assert all(isinstance(title, str) and title.strip() for title in output["data"])


def test_v2_body_is_json_whatever_the_declared_content_type(server: ServerProcess, http: requests.Session) -> None:
    payload = '{"inputs":[{"name":"bodies","shape":[1],"datatype":"BYTES","data":["a body"]}]}'

    response = http.post(
        server.url + V2_INFER, data=payload, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=60
    )

    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == v2_titles(http, server, ["a body"])


def test_v2_accepts_a_column_of_bodies(server: ServerProcess, http: requests.Session) -> None:
    payload: dict[str, Any] = {
        "inputs": [{"name": "bodies", "shape": [2, 1], "datatype": "BYTES", "data": [[b] for b in BODIES[:2]]}]
    }

    response = http.post(server.url + V2_INFER, json=payload, timeout=60)

    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == v2_titles(http, server, BODIES[:2])


def test_batch_titles_come_back_in_body_order(server: ServerProcess, http: requests.Session) -> None:
    one_by_one = [seldon_titles(http, server, [body])[0] for body in BODIES]

    assert seldon_titles(http, server, BODIES) == one_by_one
    assert v2_titles(http, server, BODIES) == one_by_one


def test_concurrent_requests_each_get_their_own_titles(server: ServerProcess, http: requests.Session) -> None:
    # Concurrent requests are merged by MLServer's adaptive batcher and split again afterwards.
    expected = {body: seldon_titles(http, server, [body])[0] for body in BODIES}
    requests_to_send = [[body] for body in BODIES] * 4 + [BODIES[::-1]] * 4

    def send(bodies: list[str]) -> tuple[list[str], list[str]]:
        with requests.Session() as own:  # a session per request, as requests.post makes: never shared by threads
            if len(bodies) % 2:
                return bodies, v2_titles(own, server, bodies)
            return bodies, seldon_titles(own, server, bodies)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, requests_to_send))

    for bodies, titles in answers:
        assert titles == [expected[body] for body in bodies]


def test_a_bad_request_does_not_fail_good_ones_batched_with_it(server: ServerProcess) -> None:
    good = {"inputs": [{"name": "bodies", "shape": [1], "datatype": "BYTES", "data": [BODIES[0]]}]}
    bad = {"inputs": [{"name": "bodies", "shape": [1], "datatype": "BYTES", "data": [42]}]}

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda payload: requests.post(server.url + V2_INFER, json=payload, timeout=60).status_code,
                [good, bad] * 8,
            )
        )

    assert statuses == [200, 400] * 8


VALID_BUT_AWKWARD = {
    "unicode": "L'export échoue: «fichier introuvable» — ошибка при сохранении, 保存に失敗しました",
    "emoji": "🔥🔥 the app crashes 💥 when I tap 👉 the share button 📤 on iOS 🍏",
    "code_block": "steps:\n```python\nimport foo\nfoo.bar(None)  # TypeError: 'NoneType'\n```\n\tTraceback …",
    "nul_and_control": "null byte \x00 here, bell \x07, escape \x1b[31mred\x1b[0m, form feed \x0c end",
    "right_to_left": "הכפתור לא עובד בדף ההגדרות \u202e reversed \u202c و الزر لا يعمل",
    "very_long": "the parser is slow on big files " * 600,  # ~19,000 characters, under the 20,000 limit
    "one_word": "crash",
}


@pytest.mark.parametrize("body", VALID_BUT_AWKWARD.values(), ids=VALID_BUT_AWKWARD.keys())
def test_awkward_but_valid_bodies_get_a_title(server: ServerProcess, http: requests.Session, body: str) -> None:
    [title] = seldon_titles(http, server, [body])

    assert isinstance(title, str) and title.strip()


def test_gzip_request_is_accepted(server: ServerProcess, http: requests.Session) -> None:
    import gzip

    response = http.post(
        server.url + "/api/v1.0/predictions",
        data=gzip.compress(TUTORIAL_PAYLOAD.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["ndarray"][0][0].strip()
