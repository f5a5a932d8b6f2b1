"""gRPC (off unless `--grpc-port` is given): V2 over gRPC goes through the same per-request checks."""

import grpc
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc import dataplane_pb2_grpc as grpc_api

from tests.serving.serving_harness import ServerProcess, free_port


def infer_request(items: list[bytes], shape: list[int] | None = None) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="bodies",
        datatype="BYTES",
        shape=shape or [len(items)],
        contents=pb.InferTensorContents(bytes_contents=items),
    )
    return pb.ModelInferRequest(model_name="issue-summarization", inputs=[tensor])


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory):
    """One server with gRPC on for the module: each test only sends it one request (one server start fewer)."""
    folder = tmp_path_factory.mktemp("grpc_server")
    port = free_port()
    process = ServerProcess(folder, folder / "grpc.log", predictor_loader="fake_predictor:load")
    process.start_arguments = ["--grpc-port", str(port)]
    with process.running(), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield grpc_api.GRPCInferenceServiceStub(channel)


def test_grpc_answers_one_title_per_body(grpc_server) -> None:
    response = grpc_server.ModelInfer(
        infer_request([b"one two three four", "f\u00fcnf \U0001f642".encode()]), timeout=10
    )

    [output] = response.outputs
    assert output.name == "titles"
    assert list(output.contents.bytes_contents) == [b"title: one two three", "title: f\u00fcnf \U0001f642".encode()]


def test_grpc_bad_input_is_invalid_argument_with_the_message(grpc_server) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        grpc_server.ModelInfer(infer_request([b"\xff\xfe"]), timeout=10)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == 'input "bodies" data[0] is not valid UTF-8 text'
