"""The model's Prometheus metrics port is declared and scraped: a PodMonitor (Prometheus operator CRD, vendored
v0.93.0 schema) or the conventional `prometheus.io/*` pod annotations, chosen by `serving:metricsScrape` and
rendered and validated on both stacks."""

from __future__ import annotations

import kubernetes_validate
import pytest

from infra import config as infra_config
from infra import serving as infra_serving
from tests.infra.conftest import MODEL_TAG
from tests.infra.harness import STACKS, ProgramRun, run_program
from tests.infra.schemas import KUBERNETES_VERSION, errors, pod_monitor_validator, seldon_deployment_validator


def test_config_and_component_agree_on_the_scrape_kinds() -> None:
    assert infra_config.SCRAPE_KINDS == infra_serving.SCRAPE_KINDS


@pytest.fixture(scope="module", params=STACKS)
def podmonitor_program(request: pytest.FixtureRequest) -> ProgramRun:
    return run_program(
        request.param,
        {
            "serving:modelTag": MODEL_TAG,
            "serving:metricsScrape": "podmonitor",
            "serving:monitoringNamespace": "observability",
        },
    )


def containers(manifest: dict) -> list[dict]:
    return [
        container
        for predictor in manifest["spec"]["predictors"]
        for spec in predictor["componentSpecs"]
        for container in spec["spec"]["containers"]
    ]


def seldon(program: ProgramRun) -> dict:
    return next(m for m in program.manifests() if m["kind"] == "SeldonDeployment")


def test_the_model_container_declares_its_metrics_port(serving_program: ProgramRun) -> None:
    for container in containers(seldon(serving_program)):
        assert {"name": "metrics", "containerPort": 8082, "protocol": "TCP"} in container["ports"]


def test_by_default_the_pods_carry_the_scrape_annotations_and_validate(serving_program: ProgramRun) -> None:
    manifest = seldon(serving_program)

    for predictor in manifest["spec"]["predictors"]:
        assert predictor["componentSpecs"][0]["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8082",
            "prometheus.io/path": "/metrics",
        }
    assert errors(seldon_deployment_validator(), manifest) == []
    assert not [m for m in serving_program.manifests() if m["kind"] == "PodMonitor"]


def test_the_network_policy_lets_only_the_monitoring_namespace_reach_the_metrics_port(
    serving_program: ProgramRun,
) -> None:
    policy = next(
        m
        for m in serving_program.manifests()
        if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "issue-summarization-from-gateway-only"
    )
    metrics_rule = next(rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 8082)

    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)


def test_a_podmonitor_is_rendered_and_validates_against_the_operator_crd(podmonitor_program: ProgramRun) -> None:
    (monitor,) = [m for m in podmonitor_program.manifests() if m["kind"] == "PodMonitor"]

    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert errors(pod_monitor_validator(), monitor) == []
    assert monitor["spec"]["selector"] == {"matchLabels": {"seldon-deployment-id": "issue-summarization"}}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [monitor["metadata"]["namespace"]]}
    assert "annotations" not in seldon(podmonitor_program)["spec"]["predictors"][0]["componentSpecs"][0].get(
        "metadata", {}
    )


def test_a_misspelt_podmonitor_field_would_be_caught(podmonitor_program: ProgramRun) -> None:
    monitor = next(m for m in podmonitor_program.manifests() if m["kind"] == "PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"

    assert any("prot" in error for error in errors(pod_monitor_validator(), monitor))


def test_an_unknown_scrape_kind_is_refused_by_name() -> None:
    with pytest.raises(Exception, match="metricsScrape"):
        run_program("minikube", {"serving:metricsScrape": "prometheus"})
