"""Cluster security, asserted on what the program renders: least privilege, fenced pods, mounted secrets."""

from __future__ import annotations

import json

from tests.infra.harness import ProgramRun


def seldon_pod(run: ProgramRun) -> dict:
    manifest = next(m for m in run.manifests() if m["kind"] == "SeldonDeployment")
    return manifest["spec"]["predictors"][0]["componentSpecs"][0]["spec"]


def test_model_container_runs_unprivileged_on_a_read_only_root(serving_program: ProgramRun) -> None:
    pod = seldon_pod(serving_program)
    context = pod["containers"][0]["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"]


def test_model_has_requests_and_limits(serving_program: ProgramRun) -> None:
    manifest = next(m for m in serving_program.manifests() if m["kind"] == "SeldonDeployment")
    predictor = manifest["spec"]["predictors"][0]
    resources = predictor["componentSpecs"][0]["spec"]["containers"][0]["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"cpu", "memory"}


def test_only_the_ingress_gateway_reaches_the_model_pods(serving_program: ProgramRun) -> None:
    policy = next(
        m
        for m in serving_program.manifests()
        if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].startswith("issue-summarization")
    )
    assert policy["spec"]["podSelector"] == {"matchLabels": {"seldon-deployment-id": "issue-summarization"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rule, metrics = policy["spec"]["ingress"]  # the gateway to HTTP; Prometheus's namespace to the metrics port only
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert metrics["ports"] == [{"protocol": "TCP", "port": 8082}]


def test_only_pipeline_workers_and_pachyderm_itself_reach_pachd(program: ProgramRun) -> None:
    policy = next(
        m
        for m in program.manifests()
        if m["kind"] == "NetworkPolicy" and m["metadata"]["name"] == "pachd-from-pipelines-only"
    )
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "pachd"}}
    peers = [p["podSelector"]["matchLabels"] for p in policy["spec"]["ingress"][0]["from"]]
    assert {"component": "worker"} in peers
    assert all("namespaceSelector" not in p for p in policy["spec"]["ingress"][0]["from"])


def test_the_model_identity_has_no_token_and_no_role(serving_program: ProgramRun) -> None:
    account = next(m for m in serving_program.manifests() if m["kind"] == "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert seldon_pod(serving_program)["serviceAccountName"] == account["metadata"]["name"]
    assert seldon_pod(serving_program)["automountServiceAccountToken"] is False
    assert not [
        m
        for m in serving_program.manifests()
        if m["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    ]


def test_secrets_are_never_passed_through_environment_variables(serving_program: ProgramRun) -> None:
    rendered = json.dumps([r.inputs for r in serving_program])
    assert "secretKeyRef" not in rendered and '"secretRef"' not in rendered


def test_operators_report_no_usage_and_seldon_watches_only_our_namespace(program: ProgramRun) -> None:
    values = {r.inputs["chart"]: r.inputs["values"] for r in program.of_type("kubernetes:helm.sh/v3:Release")}
    assert values["seldon-core-operator"]["usageMetrics"]["enabled"] is False
    assert values["seldon-core-operator"]["singleNamespace"] is True
    assert values["pachyderm"]["pachd"]["metrics"]["enabled"] is False
