"""The server with the clients people really use: `tritonclient.http` (the Open Inference Protocol's reference
client, installed with MLServer) and seldon-core 1.17.1's `SeldonClient` (in its own venv: its pins clash with ours).

A server with the echo model (title = "title: " + the body's first three words) makes every answer exact.
"""

import json
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.serving.client_envs import ClientUnavailable, seldon_client_python
from tests.serving.serving_harness import ServerProcess

MODEL = "issue-summarization"
BODIES = ["the build fails on windows", "crash when the path has spaces", "docs: typo in the readme ✓"]
TITLES = ["title: the build fails", "title: crash when the", "title: docs: typo in"]


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("clients_server")
    with ServerProcess(folder, folder / "server.log", predictor_loader="fake_predictor:load").running() as process:
        yield process


@pytest.fixture()
def triton_client(echo_server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{echo_server.port}", network_timeout=60)
    yield client
    client.close()


def bodies_input(bodies: list[str], *, binary_data: bool) -> triton.InferInput:
    tensor = triton.InferInput("bodies", [len(bodies)], "BYTES")
    tensor.set_data_from_numpy(np.array([body.encode() for body in bodies], dtype=np.object_), binary_data=binary_data)
    return tensor


def titles(result: triton.InferResult) -> list[str]:
    return [title.decode() if isinstance(title, bytes) else title for title in result.as_numpy("titles").tolist()]


# --- tritonclient.http ------------------------------------------------------------------------------------------


def test_tritonclient_defaults_binary_tensors_both_ways(triton_client: triton.InferenceServerClient) -> None:
    result = triton_client.infer(MODEL, [bodies_input(BODIES, binary_data=True)])

    assert titles(result) == TITLES
    assert result.get_output("titles")["parameters"]["binary_data_size"] > 0  # answered in binary, as asked


def test_tritonclient_json_input_binary_output(triton_client: triton.InferenceServerClient) -> None:
    result = triton_client.infer(MODEL, [bodies_input(BODIES, binary_data=False)])

    assert titles(result) == TITLES


def test_tritonclient_all_json(triton_client: triton.InferenceServerClient) -> None:
    result = triton_client.infer(
        MODEL,
        [bodies_input(BODIES, binary_data=False)],
        outputs=[triton.InferRequestedOutput("titles", binary_data=False)],
    )

    assert titles(result) == TITLES
    assert result.get_output("titles")["data"] == TITLES


def test_tritonclient_sees_our_error_for_a_bad_binary_request(triton_client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("issues", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"a body"], dtype=np.object_))

    with pytest.raises(InferenceServerException) as refused:
        triton_client.infer(MODEL, [tensor])

    assert refused.value.status() == "400"
    assert refused.value.message() == 'unknown input "issues": expected one BYTES input named "bodies"'


def test_binary_body_shorter_than_its_sizes_is_400(echo_server: ServerProcess) -> None:
    import requests

    header = b'{"inputs":[{"name":"bodies","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":20}}]}'
    response = requests.post(
        f"{echo_server.url}/v2/models/{MODEL}/infer",
        data=header + b"\x05\x00\x00\x00hello",
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=30,
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "binary tensor data: input 'bodies': binary_data_size is 20 but only 9 bytes of binary data are left"
    }


# --- seldon-core 1.17.1 SeldonClient ----------------------------------------------------------------------------

SELDON_CLIENT_SCRIPT = """
import json, sys
import numpy as np
from google.protobuf.json_format import MessageToDict
from seldon_core.seldon_client import SeldonClient

port = sys.argv[1]
client = SeldonClient(payload_type="ndarray", transport="rest")
data = np.array([[body] for body in json.loads(sys.argv[2])])
answers = {
    "predict": client.predict(gateway="ambassador", gateway_endpoint=f"127.0.0.1:{port}", gateway_prefix="", data=data),
    "microservice": client.microservice(method="predict", microservice_endpoint=f"127.0.0.1:{port}", data=data),
}
results = {}
for call, answer in answers.items():
    response = answer.response
    if response is not None and not isinstance(response, dict):  # microservice() answers a proto
        response = MessageToDict(response)
    results[call] = {"success": answer.success, "msg": answer.msg, "response": response}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def seldon_python() -> str:
    try:
        return str(seldon_client_python())
    except ClientUnavailable as error:
        pytest.skip(f"seldon-core 1.17.1's client could not be installed in .venv-clients/: {error}")


@pytest.fixture(scope="module")
def seldon_answers(seldon_python: str, echo_server: ServerProcess) -> dict[str, dict]:
    """What `SeldonClient.predict` (gateway path) and `SeldonClient.microservice` each got from the echo server, by
    call: one run of the client's venv for both (each call is its own HTTP request; the interpreter start and the
    seldon_core import, most of the cost, are shared)."""
    result = subprocess.run(
        [seldon_python, "-c", SELDON_CLIENT_SCRIPT, str(echo_server.port), json.dumps(BODIES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_seldon_client_predict_through_the_gateway_path(seldon_answers: dict[str, dict]) -> None:
    answer = seldon_answers["predict"]

    assert answer["success"], answer
    assert answer["response"]["data"]["ndarray"] == [[title] for title in TITLES]


def test_seldon_client_microservice_posts_the_json_form_field(seldon_answers: dict[str, dict]) -> None:
    answer = seldon_answers["microservice"]

    assert answer["success"], answer
    assert answer["response"]["data"]["ndarray"] == [[title] for title in TITLES]
