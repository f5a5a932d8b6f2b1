"""The policy pack over the resources both stacks really declare (the real `__main__.py` under Pulumi's mocks).

The rules see what the engine would hand the pack: each resource's type, URN and inputs. The secrecy of the
registry password, which a Python policy cannot see (the SDK unwraps secrets), is checked here on the wire format.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from policy import pack, rules
from tests.delivery.test_policies import run_policy
from tests.infra import harness

# With a model tag the program also declares the SeldonDeployment, its ServiceAccount, NetworkPolicy and Ingress.
RUNS = [(stack, tag) for stack in ("minikube", "gke-gpu") for tag in (None, "0123456789abcdef0123456789abcdef")]


@functools.cache
def program(stack: str, model_tag: str | None) -> Any:
    return harness.shared_run(stack, {"serving:modelTag": model_tag} if model_tag else None)


def declared(run: Any) -> list[Any]:
    """What the engine analyzes: every resource the program registers (reads of existing objects are not checked)."""
    return [r for r in run if not getattr(r, "read", False)]


@pytest.mark.parametrize("stack, model_tag", RUNS)
def test_the_stack_passes_every_policy_of_the_pack(
    stack: str, model_tag: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pack's registered policies, as the engine runs them: the stack and its password come from the engine."""
    monkeypatch.setattr(pack, "current_stack", lambda: stack)
    monkeypatch.setattr(pack, "stack_registry_password", lambda: harness.TEST_PASSWORD)
    run = program(stack, model_tag)
    found = {
        f"{policy.name}: {r.type_} {r.name}": reported
        for r in declared(run)
        for policy in pack.POLICIES
        if (reported := run_policy(policy.name, r.type_, r.inputs, urn=r.urn))
    }
    assert found == {}


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_the_rules_see_the_stacks_workloads_images_and_registry_secret(stack: str) -> None:
    run = declared(program(stack, RUNS[1][1]))
    types = {r.type_ for r in run}
    assert {rules.K8S_SECRET, rules.DOCKER_IMAGE, "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"} <= types
    checked_images = [image for r in run for _, image in rules.images(r.type_, r.inputs)]
    assert len(checked_images) >= 2  # the stage image build and the served model at least
    pods = [pod for r in run for pod in rules.pod_specs(r.type_, r.inputs)]
    assert pods, "the SeldonDeployment's component spec is read as a pod spec"


def test_the_gpu_stack_asks_for_gpus_and_the_rule_would_refuse_them_elsewhere() -> None:
    run = declared(program("gke-gpu", None))
    refused = [m for r in run for m in rules.gpu_only_on_gpu_stack(r.type_, r.inputs, gpu_allowed=False)]
    assert refused, "the gke-gpu stack requests GPUs (GPU node pool, train pipeline): the rule must see them"


def _plain_strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a wire-format value that is not inside a secret wrapper."""
    if isinstance(value, dict):
        if harness.is_secret_wrapper(value):
            return []
        return [hit for k, v in value.items() for hit in _plain_strings(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in _plain_strings(v, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_the_registry_password_is_a_secret_wherever_it_is_sent(stack: str) -> None:
    run = program(stack, RUNS[1][1])
    leaks = [
        f"{r.type_} {r.name} {path}"
        for r in run
        for path, text in _plain_strings(r.wire)
        if any(harness.TEST_PASSWORD in variant for variant in rules._decoded_variants(text))
    ]
    assert leaks == []
    secret = next(r for r in run if r.type_ == rules.K8S_SECRET and r.inputs.get("type") == rules.DOCKER_CONFIG_JSON)
    assert secret.secret_paths & {"data", "stringData"}, "the dockerconfigjson must be sent as a secret"


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_with_tfjob_training_the_stack_passes_every_policy(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's ServiceAccount, Role and bindings too: the TFJob rights are a namespaced Role."""
    monkeypatch.setattr(pack, "current_stack", lambda: stack)
    monkeypatch.setattr(pack, "stack_registry_password", lambda: harness.TEST_PASSWORD)
    run = declared(harness.shared_run(stack, {"issue-titles:trainer": "tfjob", "issue-titles:trainWorkers": "2"}))
    roles = [r for r in run if r.type_ == "kubernetes:rbac.authorization.k8s.io/v1:Role"]
    assert roles and all(rules.tfjob_rights_least_privilege(r.type_, r.inputs) == [] for r in roles)
    found = {
        f"{policy.name}: {r.type_} {r.name}": reported
        for r in run
        for policy in pack.POLICIES
        if (reported := run_policy(policy.name, r.type_, r.inputs, urn=r.urn))
    }
    assert found == {}
