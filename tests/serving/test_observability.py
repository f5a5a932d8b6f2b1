"""What an operator sees of a running server: Prometheus metrics with the bundle's version, an access log without
body text, JSON logs, OpenTelemetry traces to an OTLP collector, and model metadata (V2 and Seldon v1) from the
bundle.

The servers here run the echo predictor (no TensorFlow) on a folder holding a provenance.json like the one
`stages build` writes, so they start in a second; what is checked is the server, not the model.
"""

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from issue_titles.serving.limits import ServingLimits
from issue_titles.serving.observability import JSONFormatter, model_version, resolve_log_format
from issue_titles.serving.settings import build_settings
from tests.serving.serving_harness import ServerProcess, free_port

JOB_ID = "5f0c3a9d2b7e4d1f8a6c0e9b7d5a3f21"
SECRET_BODY = "the build fails whenever zanzibar-quokka-7731 is in the path"
PROVENANCE: dict[str, Any] = {
    "bundle_format": 1,
    "model_name": "issue-summarization",
    "job_id": JOB_ID,
    "output_commit": "c0ffee00c0ffee00c0ffee00c0ffee00",
    "pipeline": "build",
    "inputs": {
        "train": {"path": "/pfs/train", "commit": "1111aaaa1111aaaa1111aaaa1111aaaa"},
        "split": {"path": "/pfs/split", "commit": "2222bbbb2222bbbb2222bbbb2222bbbb"},
    },
    "code": {"package": "issue-titles", "version": "0.1.0", "source_sha256": "ab" * 32},
    "architecture": "pointer_generator",
    "decoding": {"beam_width": 4, "length_penalty": 0.6, "copy_bias": 0.0},
    "metrics": {
        "model": {"rouge_l": 0.3121},
        "lead_baseline": {"name": "lead_k", "words": 9, "rouge_l": 0.2512},
        "test_rows": 4000,
        "heldout": {"rows": 900, "model": {"rouge_l": 0.3105}, "best_baseline": {"rouge_l": 0.2433}},
    },
    "built_at": "2026-12-01T10:00:00+00:00",
    "files": {"model.weights.h5": "0123456789abcdef" * 4},
}
V1_REQUEST: dict[str, Any] = {"data": {"ndarray": [[SECRET_BODY]]}}
V2_REQUEST: dict[str, Any] = {
    "inputs": [{"name": "bodies", "shape": [2], "datatype": "BYTES", "data": [SECRET_BODY, "second body"]}]
}


def fake_bundle(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "provenance.json").write_text(json.dumps(PROVENANCE), encoding="utf-8")
    (folder / "MODEL_CARD.md").write_text("# Model card: issue-summarization\n\nheld-out ROUGE-L 0.3105\n")
    return folder


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace collector on 127.0.0.1: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list = []
        self.resources: list = []
        self.received = threading.Event()

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            self.resources.append(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(0)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, collector) -> Iterator[ServerProcess]:
    """One server with metrics, tracing and JSON logs on, through the documented flags and MLSERVER_* settings."""
    _, collector_port = collector
    folder = tmp_path_factory.mktemp("observed")
    metrics_port = free_port()
    server = ServerProcess(
        fake_bundle(folder / "bundle"),
        folder / "server.log",
        predictor_loader="fake_predictor:load",
        start_arguments=["--metrics-port", str(metrics_port), "--log-format", "json"],
        env={
            "MLSERVER_TRACING_SERVER": f"127.0.0.1:{collector_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans within 0.1 s instead of 5 s
        },
    )
    server.metrics_port = metrics_port
    with server.running() as process:
        yield process


def scrape(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def success_count(samples: dict, version: str) -> float:
    return samples.get(
        ("model_infer_request_success_total", (("model", "issue-summarization"), ("version", version))), 0.0
    )


def test_v1_and_v2_requests_are_counted_with_the_job_id_as_version(observed: ServerProcess) -> None:
    before = success_count(scrape(observed), JOB_ID)

    assert requests.post(f"{observed.url}/api/v1.0/predictions", json=V1_REQUEST, timeout=10).status_code == 200
    assert (
        requests.post(f"{observed.url}/v2/models/issue-summarization/infer", json=V2_REQUEST, timeout=10).status_code
        == 200
    )

    samples = scrape(observed)
    assert success_count(samples, JOB_ID) == before + 2
    assert success_count(samples, "None") == 0.0
    assert not any(dict(labels).get("version") == "None" for (name, labels) in samples if name.startswith("model_"))


def test_access_log_has_a_json_line_per_request_and_never_the_body(observed: ServerProcess) -> None:
    requests.post(f"{observed.url}/v2/models/issue-summarization/infer", json=V2_REQUEST, timeout=10)
    requests.post(f"{observed.url}/api/v1.0/predictions", data=b'{"data": 1}', timeout=10)  # a 400

    def access_lines() -> list[dict]:
        lines = [json.loads(line) for line in observed.log().splitlines() if line.startswith("{")]
        return [line for line in lines if line["logger"] == "issue_titles.access"]

    observed.wait_until(lambda: any(line["http"]["status"] == 400 for line in access_lines()), "logged", 10)
    lines = access_lines()
    infer = [line for line in lines if line["http"]["path"] == "/v2/models/issue-summarization/infer"][-1]
    assert infer["http"]["method"] == "POST" and infer["http"]["status"] == 200 and infer["http"]["bodies"] == 2
    assert infer["http"]["latency_ms"] > 0
    refused = [line for line in lines if line["http"]["status"] == 400][-1]
    assert refused["http"]["path"] == "/api/v1.0/predictions" and refused["http"]["bodies"] == 0
    assert "zanzibar-quokka" not in observed.log()  # the body text appears nowhere in the server's log


def test_every_log_line_is_json_when_asked(observed: ServerProcess) -> None:
    records = [line for line in observed.log().splitlines() if line.startswith("{")]
    assert any(json.loads(line)["logger"].startswith("mlserver") for line in records)
    for line in records:
        assert {"time", "level", "logger", "message"} <= set(json.loads(line))


def test_a_request_trace_reaches_the_otlp_collector(observed: ServerProcess, collector) -> None:
    servicer, _ = collector
    requests.post(f"{observed.url}/v2/models/issue-summarization/infer", json=V2_REQUEST, timeout=10)

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any("/infer" in span.name for span in servicer.spans):
        time.sleep(0.1)
    names = [span.name for span in servicer.spans]
    assert any("/v2/models/{model_name}/infer" in name for name in names), names
    service = {kv.key: kv.value.string_value for resource in servicer.resources for kv in resource.attributes}
    assert service.get("service.name") == "mlserver"


def test_v2_metadata_comes_from_the_bundle(observed: ServerProcess) -> None:
    metadata = requests.get(f"{observed.url}/v2/models/issue-summarization", timeout=10).json()

    assert metadata["versions"] == [JOB_ID]
    assert metadata["platform"] == "tensorflow_keras"
    assert metadata["inputs"] == [{"name": "bodies", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"] == [{"name": "titles", "datatype": "BYTES", "shape": [-1]}]
    parameters = metadata["parameters"]
    assert parameters["job_id"] == JOB_ID
    assert parameters["inputs"] == PROVENANCE["inputs"]  # the data commits
    assert parameters["metrics"] == PROVENANCE["metrics"]
    assert parameters["model_card"] == "/v2/models/issue-summarization/model-card"


def test_seldon_v1_metadata_follows_seldon_documented_shape(observed: ServerProcess) -> None:
    model = requests.get(f"{observed.url}/api/v1.0/metadata/issue-summarization", timeout=10).json()
    graph = requests.get(f"{observed.url}/api/v1.0/metadata", timeout=10).json()

    # docs.seldon.ai/seldon-core-1/reference/prediction-apis/external-prediction ("Metadata")
    assert model["name"] == "issue-summarization" and model["versions"] == [JOB_ID]
    assert model["platform"] == "tensorflow_keras"
    assert model["inputs"] == [{"name": "bodies", "datatype": "BYTES", "shape": [-1]}]
    assert all(isinstance(value, str) for value in model["custom"].values())  # Seldon 1.x: map<string, string>
    assert model["custom"]["input_commit.train"] == PROVENANCE["inputs"]["train"]["commit"]
    assert model["custom"]["rouge_l.heldout"] == "0.3105"
    assert graph["models"] == {"issue-summarization": model}
    assert graph["graphinputs"] == model["inputs"] and graph["graphoutputs"] == model["outputs"]


def test_model_card_is_served(observed: ServerProcess) -> None:
    response = requests.get(f"{observed.url}/v2/models/issue-summarization/model-card", timeout=10)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert "held-out ROUGE-L 0.3105" in response.text


def test_metrics_are_off_unless_asked(tmp_path: Path) -> None:
    build_settings(fake_bundle(tmp_path), "127.0.0.1", 9100, ServingLimits())
    server_off, _ = build_settings(tmp_path, "127.0.0.1", 9100, ServingLimits())
    server_on, model = build_settings(tmp_path, "127.0.0.1", 9100, ServingLimits(), metrics_port=9300)

    assert server_off.metrics_endpoint is None
    assert (server_on.metrics_endpoint, server_on.metrics_port) == ("/metrics", 9300)
    assert model.version == JOB_ID and model.versions == [JOB_ID]


def test_mlserver_settings_from_the_environment_are_honoured(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLSERVER_METRICS_ENDPOINT", "/prometheus")
    monkeypatch.setenv("MLSERVER_SERVER_NAME", "titles")
    monkeypatch.setenv("MLSERVER_DEBUG", "true")  # not honoured as `debug`: that turns on traceback pages

    server, _ = build_settings(fake_bundle(tmp_path), "127.0.0.1", 9100, ServingLimits(), metrics_port=9300)

    assert (server.metrics_endpoint, server.server_name, server.debug) == ("/prometheus", "titles", False)


def test_a_bundle_without_job_id_is_versioned_by_its_weights() -> None:
    assert model_version({"job_id": None, "files": {"model.weights.h5": "feedbeef" * 8}}) == "local-feedbeeffeed"
    assert model_version({}) is None


def test_log_format_follows_flag_then_env(monkeypatch) -> None:
    assert resolve_log_format(None, {}) == "text"
    assert resolve_log_format(None, {"MLSERVER_USE_STRUCTURED_LOGGING": "true"}) == "json"
    assert resolve_log_format("text", {"ISSUE_TITLES_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ValueError, match="log format must be one of text, json"):
        resolve_log_format("xml", {})


def test_json_log_lines_stay_valid_json_whatever_the_message() -> None:
    import logging

    record = logging.LogRecord("x", logging.INFO, __file__, 1, 'say "hi"\nthere', None, None)
    assert json.loads(JSONFormatter().format(record))["message"] == 'say "hi"\nthere'


def test_stages_serve_turns_metrics_on_from_mlserver_metrics_port(server: ServerProcess, bundle) -> None:
    """The serving image's path (`stages serve`, real model when available): MLSERVER_METRICS_PORT is honoured and the
    version label is the bundle's own (no job ID outside Pachyderm: `local-<weights sha256 prefix>`).

    The suite's main server (tests/serving/conftest.py) is that server: it was started with MLSERVER_METRICS_PORT and
    nothing else naming metrics. It has answered other tests' requests already, so the request here is counted as
    one more under the bundle's version than before it."""
    model_dir, loader = bundle
    if loader is not None:
        pytest.skip("needs the real tiny bundle (TensorFlow) for `stages serve`")
    assert server.via_stages_cli and server.metrics_port is not None
    assert server.env["MLSERVER_METRICS_PORT"] == str(server.metrics_port)
    assert "--metrics-port" not in server.start_arguments
    provenance = json.loads((model_dir / "provenance.json").read_text())
    version = model_version(provenance)
    assert version is not None
    before = success_count(scrape(server), version)

    assert requests.post(f"{server.url}/api/v1.0/predictions", json=V1_REQUEST, timeout=30).status_code == 200
    samples = scrape(server)

    assert version.startswith("local-") and success_count(samples, version) == before + 1
