"""The registry password stays a secret everywhere; every bad config stops the preview with a message that helps."""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.config import ConfigError
from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import TEST_PASSWORD, is_secret_wrapper, run_program

LEAK_FORMS = (
    TEST_PASSWORD,
    base64.b64encode(TEST_PASSWORD.encode()).decode(),
    base64.b64encode(f"example:{TEST_PASSWORD}".encode()).decode(),
    base64.b64encode(f"_json_key:{TEST_PASSWORD}".encode()).decode(),
)


def without_secrets(value: Any) -> Any:
    """The wire inputs with every secret-wrapped value cut out: what would be stored in plain state."""
    if isinstance(value, dict):
        if is_secret_wrapper(value):
            return "[secret]"
        return {k: without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_password_never_appears_in_plain_text_in_inputs_or_outputs(stack: str) -> None:
    run = run_program(stack, {"serving:modelTag": MODEL_TAG})
    for resource in run:
        plain = json.dumps(without_secrets(resource.wire))
        for form in LEAK_FORMS:
            assert form not in plain, f"{resource.type_} {resource.name} carries the password in plain text"
    for key, value in run.outputs.items():
        if key not in run.secret_outputs:
            assert not any(form in json.dumps(value) for form in LEAK_FORMS), f"output {key} leaks it"


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_password_reaches_the_registry_secret_and_the_image_push_as_a_secret(stack: str) -> None:
    run = run_program(stack)
    secrets = [s for s in run.of_type("kubernetes:core/v1:Secret")
               if s.inputs.get("type") == "kubernetes.io/dockerconfigjson"]
    # One copy in each namespace whose pods use it: Pachyderm's (export pushes) and serving's (pulls).
    assert sorted(s.inputs["metadata"]["namespace"] for s in secrets) == ["issue-titles", "issue-titles-serving"]
    for secret in secrets:
        assert secret.inputs["type"] == "kubernetes.io/dockerconfigjson"
        assert "stringData" in secret.secret_paths
        auth = json.loads(secret.inputs["stringData"][".dockerconfigjson"])["auths"]
        assert list(auth.values())[0]["password"] == TEST_PASSWORD
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


def test_config_errors_stop_before_any_resource_is_declared() -> None:
    """The config is read first, so a preview with a bad config changes nothing."""
    from tests.infra import harness

    seen: list[Any] = []
    original = harness._RecordingMonitor.RegisterResource

    def spy(self: Any, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            seen.append(request.type)
        return original(self, request)

    harness._RecordingMonitor.RegisterResource = spy
    try:
        expect_config_error("minikube", {"issue-titles:gpus": "1"})
    finally:
        harness._RecordingMonitor.RegisterResource = original
    assert seen == []
