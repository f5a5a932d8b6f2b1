"""The registry password stays a secret everywhere; every bad config stops the preview with a message that helps."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.config import ConfigError
from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import TEST_PASSWORD, plain_text_leaks, run_program, shared_run

LEAK_FORMS = (
    TEST_PASSWORD,
    base64.b64encode(TEST_PASSWORD.encode()).decode(),
    base64.b64encode(f"example:{TEST_PASSWORD}".encode()).decode(),
    base64.b64encode(f"_json_key:{TEST_PASSWORD}".encode()).decode(),
)


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_password_never_appears_in_plain_text_in_inputs_or_outputs(stack: str) -> None:
    run = shared_run(stack, {"serving:modelTag": MODEL_TAG})
    assert plain_text_leaks(run, LEAK_FORMS) == []


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_password_reaches_the_registry_secret_and_the_image_push_as_a_secret(stack: str) -> None:
    run = shared_run(stack)
    secrets = [
        s for s in run.of_type("kubernetes:core/v1:Secret") if s.inputs.get("type") == "kubernetes.io/dockerconfigjson"
    ]
    # One copy in each namespace whose pods use it: Pachyderm's (export pushes) and serving's (pulls).
    assert sorted(s.inputs["metadata"]["namespace"] for s in secrets) == ["issue-titles", "issue-titles-serving"]
    for secret in secrets:
        assert secret.inputs["type"] == "kubernetes.io/dockerconfigjson"
        assert "stringData" in secret.secret_paths
        auth = json.loads(secret.inputs["stringData"][".dockerconfigjson"])["auths"]
        assert next(iter(auth.values()))["password"] == TEST_PASSWORD
    image = run.one("docker:index/image:Image")
    assert "registry.password" in image.secret_paths


def expect_config_error(stack: str, overrides: dict[str, str | None], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        run_program(stack, overrides, **kwargs)
    return str(raised.value)


def test_missing_registry_password_names_the_secret_command() -> None:
    message = expect_config_error("minikube", {}, password=None)
    assert "registry:password" in message
    assert "pulumi config set --secret registry:password" in message


def test_plain_text_registry_password_is_refused() -> None:
    message = expect_config_error("minikube", {}, password_is_secret=False)
    assert "registry:password` is stored in plain text" in message
    assert "pulumi config rm registry:password" in message


def test_unknown_stack_option_is_refused_with_a_suggestion() -> None:
    message = expect_config_error("minikube", {"issue-titles:namespcae": "x"})
    assert "unknown config key `issue-titles:namespcae`" in message
    assert "did you mean `issue-titles:namespace`?" in message
    assert "pulumi config rm issue-titles:namespcae" in message


def test_gpu_count_on_minikube_is_refused() -> None:
    message = expect_config_error("minikube", {"issue-titles:gpus": "1"})
    assert "`issue-titles:gpus` is 1" in message and "minikube" in message
    assert "pulumi config set issue-titles:gpus 0" in message


def test_gpu_count_must_be_a_number() -> None:
    message = expect_config_error("gke-gpu", {"issue-titles:gpus": "two"})
    assert "invalid `issue-titles:gpus` 'two'" in message and "whole number" in message


@pytest.mark.parametrize("name", ["Issue_Titles", "-leading-dash", "x" * 64])
def test_invalid_namespace_name_is_refused(name: str) -> None:
    message = expect_config_error("minikube", {"issue-titles:namespace": name})
    assert f"invalid `issue-titles:namespace` {name!r}" in message and "DNS-1123" in message


def test_unknown_cluster_kind_is_refused() -> None:
    message = expect_config_error("minikube", {"issue-titles:cluster": "eks"})
    assert "invalid `issue-titles:cluster` 'eks'" in message and "minikube, gke" in message


def test_minikube_without_pachd_address_says_how_to_find_it() -> None:
    message = expect_config_error("minikube", {"issue-titles:pachdAddress": None})
    assert "missing config `issue-titles:pachdAddress`" in message and "$(minikube ip)" in message


def test_image_repository_with_a_tag_is_refused() -> None:
    message = expect_config_error("minikube", {"serving:imageRepo": "docker.io/example/serving:latest"})
    assert "invalid `serving:imageRepo`" in message and "without a tag" in message


def test_missing_registry_server_names_the_key() -> None:
    message = expect_config_error("minikube", {"registry:server": None})
    assert "missing config `registry:server`" in message and "pulumi config set registry:server" in message


def test_gke_without_a_gcp_project_names_the_key() -> None:
    message = expect_config_error("gke-gpu", {"gcp:project": None})
    assert "missing config `gcp:project`" in message


def test_config_errors_stop_before_any_resource_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config is read first, so a preview with a bad config changes nothing."""
    from tests.infra import harness

    seen: list[Any] = []
    original = harness._RecordingMonitor.RegisterResource

    def spy(self: Any, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            seen.append(request.type)
        return original(self, request)

    monkeypatch.setattr(harness._RecordingMonitor, "RegisterResource", spy)
    expect_config_error("minikube", {"issue-titles:gpus": "1"})
    assert seen == []


# --- hardening round 3 (issue 29, item 13): values preview accepted that `pulumi up` would reject or regret -------


@pytest.mark.parametrize("key", ["issue-titles:namespace", "serving:namespace"])
@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "default"])
def test_a_namespace_kubernetes_reserves_is_refused_for_every_namespace_the_stack_owns(key: str, name: str) -> None:
    overrides: dict[str, str | None] = {key: name}
    if key == "issue-titles:namespace":
        overrides["serving:namespace"] = "titles-serving"  # so the serving namespace is not derived from it

    message = expect_config_error("minikube", overrides)

    assert f"invalid `{key}` {name!r}" in message
    assert "belong to Kubernetes" in message and "`pulumi destroy` would delete it" in message
    assert f"pulumi config set {key} " in message


@pytest.mark.parametrize("replicas", ["100000000", "51"])
def test_serving_replicas_over_the_documented_maximum_are_refused(replicas: str) -> None:
    message = expect_config_error("minikube", {"serving:replicas": replicas})

    assert f"invalid `serving:replicas` {replicas}: must be at most 50" in message
    assert "pulumi config set serving:replicas 2" in message


def test_fifty_replicas_are_accepted() -> None:
    from infra.config import MAX_SERVING_REPLICAS

    assert MAX_SERVING_REPLICAS == 50
    run_program("minikube", {"serving:replicas": "50"})


@pytest.mark.parametrize("name", ["Not_A_Namespace!", "UPPER", "x" * 64, "-dash"])
def test_a_gateway_namespace_that_is_no_dns_label_is_refused(name: str) -> None:
    message = expect_config_error("minikube", {"serving:gatewayNamespace": name})

    assert f"invalid `serving:gatewayNamespace` {name!r}" in message and "DNS-1123 label" in message
    assert "pulumi config set serving:gatewayNamespace ingress-nginx" in message


@pytest.mark.parametrize(
    "host", ["bad host!*", "under_score.example.com", "a..b", "999.1.1.1", "host:99999", "x" * 64 + ".example.com"]
)
def test_an_ingress_host_that_is_no_host_name_is_refused(host: str) -> None:
    message = expect_config_error("minikube", {"serving:ingressHost": host})

    assert f"invalid `serving:ingressHost` {host!r}" in message
    assert "pulumi config set serving:ingressHost titles.example.com" in message


@pytest.mark.parametrize("host", ["localhost", "192.168.49.2", "titles.example.com", "localhost:8080"])
def test_host_names_and_addresses_are_accepted_as_ingress_host(host: str) -> None:
    run_program("minikube", {"serving:ingressHost": host})


@pytest.mark.parametrize("address", ["grpc://host:99999", "grpc://host:0", "grpcs://10.0.0.1:65536"])
def test_a_pachd_port_out_of_range_is_refused(address: str) -> None:
    message = expect_config_error("minikube", {"issue-titles:pachdAddress": address})

    assert f"invalid `issue-titles:pachdAddress` {address!r}: the port must be 1 to 65535" in message
    assert "pulumi config set issue-titles:pachdAddress grpc://192.168.49.2:30080" in message


# --- issue 30: the training knobs are PipelineSettings' ranges, reported under their config keys -------------------


@pytest.mark.parametrize(
    "key, value, reason",
    [
        ("epochs", "0", "must be a whole number from 1 to 10,000"),
        ("epochs", "10001", "must be a whole number from 1 to 10,000"),
        ("sampleSize", "9", "must be a whole number of 10 or more"),
        ("parallelism", "17", "must be an integer from 1 to 16"),
        ("minRougeL", "1.5", "must be between 0 and 1"),
        ("architecture", "'transformer'", "must be one of default, tutorial"),
    ],
)
def test_a_training_knob_out_of_range_names_its_key_and_the_settings_rule(key: str, value: str, reason: str) -> None:
    message = expect_config_error("minikube", {f"issue-titles:{key}": value.strip("'")})

    assert message.startswith(f"invalid `issue-titles:{key}` {value}: {reason}")
    assert f"pulumi config set issue-titles:{key} " in message


def test_a_training_knob_that_does_not_parse_names_its_key() -> None:
    message = expect_config_error("minikube", {"issue-titles:minRougeL": "high"})

    assert message.startswith("invalid `issue-titles:minRougeL` 'high': use a number")


def test_chart_versions_default_from_one_table() -> None:
    """The stacks set no version: each comes from infra.config.VERSIONS unless a stack overrides it."""
    from infra.config import VERSIONS

    run = run_program("minikube", {"issue-titles:seldonChartVersion": "1.17.0"})
    defaults = {name: default for _, name, default in VERSIONS}
    releases = {r.inputs["chart"]: r for r in run.of_type("kubernetes:helm.sh/v3:Release")}
    seldon, pachyderm = releases["seldon-core-operator"], releases["pachyderm"]
    assert seldon.inputs["version"] == "1.17.0"
    assert pachyderm.inputs["version"] == defaults["pachydermChartVersion"]
