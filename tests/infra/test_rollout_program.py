"""The real `__main__.py` under Pulumi mocks, both stacks: pinned, latest and canary rollouts render the expected
SeldonDeployment (predictors, traffic, images), and a new export is an in-place change of the image.

`latest` reads the fake pachd (tests/infra/fake_pachd.py) through `infra.pachd.connect`, and the stack's
own previous outputs through a StackReference that these mocks answer.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import grpc
import kubernetes_validate
import pulumi
import pytest

from infra.config import ConfigError
from tests.infra import harness
from tests.infra.fake_pachd import FakePachd
from tests.infra.harness import STACKS, ProgramRun, Recorded, run_program, stack_config
from tests.infra.rollout_fixtures import add_commit_set
from tests.infra.schemas import KUBERNETES_VERSION, errors, seldon_deployment_validator

SELDON_DEPLOYMENT = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
OLD, NEW = "1" * 32, "2" * 32


class _StackMocks(harness._Mocks):
    """The harness's mocks, plus this stack's previous outputs for a StackReference to itself."""

    previous_outputs: ClassVar[dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        if args.typ == STACK_REFERENCE:
            return args.resource_id or args.name, {
                "name": args.inputs.get("name"),
                "outputs": dict(self.previous_outputs),
                "secretOutputNames": [],
            }
        return super().new_resource(args)


@pytest.fixture
def pachd(monkeypatch: pytest.MonkeyPatch) -> FakePachd:
    fake = FakePachd()
    monkeypatch.setattr("infra.pachd.connect", fake.connect)
    monkeypatch.setattr(harness, "_Mocks", _StackMocks)
    monkeypatch.setattr(_StackMocks, "previous_outputs", {})
    return fake


def image_repo(stack: str) -> str:
    return stack_config(stack)["serving:imageRepo"]


def deployment(run: ProgramRun) -> Recorded:
    return run.one(SELDON_DEPLOYMENT)


def predictors(run: ProgramRun) -> list[tuple[str, str, int | None, int]]:
    """(name, image, traffic, replicas) of every predictor of the SeldonDeployment."""
    return [
        (p["name"], p["componentSpecs"][0]["spec"]["containers"][0]["image"], p.get("traffic"), p["replicas"])
        for p in deployment(run).inputs["spec"]["predictors"]
    ]


def seldon_traffic_errors(spec: dict[str, Any]) -> list[str]:
    """Seldon's admission rule for `traffic` (checkTraffic, operator/apis/machinelearning.seldon.io/v1/
    seldondeployment_webhook.go, SeldonIO/seldon-core v1.17.1): several predictors must sum to 100; one predictor
    may leave it unset or say 100."""
    shares = [p.get("traffic", 0) for p in spec["predictors"] if not p.get("shadow")]
    if len(shares) > 1 and sum(shares) != 100:
        return ["Traffic must sum to 100 for multiple predictors"]
    if len(shares) == 1 and 0 < sum(shares) < 100:
        return ["Traffic must sum be 100 for a single predictor when set"]
    return []


@pytest.mark.parametrize("stack", STACKS)
def test_pinned_serves_the_job_id_as_one_predictor(stack: str, pachd: FakePachd) -> None:
    run = run_program(stack, {"serving:modelTag": OLD})
    assert predictors(run) == [("default", f"{image_repo(stack)}:{OLD}", None, 2)]
    assert pachd.calls == [] and not run.of_type(STACK_REFERENCE)  # pinned needs neither pachd nor the last state
    assert run.outputs["serving_traffic"] == {
        "default": f"100% {image_repo(stack)}:{OLD} (job {OLD}, pinned (serving:modelTag))"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_latest_serves_the_newest_gated_export_with_provenance_outputs(stack: str, pachd: FakePachd) -> None:
    add_commit_set(pachd, OLD, image_repo(stack))
    add_commit_set(pachd, NEW, image_repo(stack))
    run = run_program(stack, {"serving:modelTag": "latest"})
    assert predictors(run) == [("default", f"{image_repo(stack)}:{NEW}", None, 2)]
    [model] = run.outputs["serving_models"]
    assert model["job_id"] == NEW and model["data_commit"] == f"raw_data@{NEW}"
    assert model["export_commit"] == f"export@{NEW}" and model["metrics"]["model_rouge_l"] == 0.31
    assert "serving_models" not in run.secret_outputs  # provenance stays readable in `pulumi stack output`


@pytest.mark.parametrize("stack", STACKS)
def test_canary_splits_traffic_between_two_predictors(stack: str, pachd: FakePachd) -> None:
    add_commit_set(pachd, NEW, image_repo(stack))
    run = run_program(stack, {"serving:modelTag": OLD, "serving:canaryTag": "latest", "serving:canaryTraffic": "20"})
    repo = image_repo(stack)
    assert predictors(run) == [("default", f"{repo}:{OLD}", 80, 2), ("canary", f"{repo}:{NEW}", 20, 1)]
    spec = deployment(run).inputs["spec"]
    assert (
        errors(
            seldon_deployment_validator(),
            {
                "apiVersion": "machinelearning.seldon.io/v1",
                "kind": "SeldonDeployment",
                "metadata": {"name": "x"},
                "spec": spec,
            },
        )
        == []
    )
    assert seldon_traffic_errors(spec) == []
    assert set(run.outputs["serving_traffic"]) == {"default", "canary"}
    assert run.outputs["serving_traffic"]["canary"].startswith(f"20% {repo}:{NEW} (job {NEW}")


_PINNED_CANARIES: dict[str, ProgramRun] = {}


def pinned_canary(stack: str) -> ProgramRun:
    """The stack serving OLD with NEW as its canary, both pinned: evaluated once per stack for the two tests that read
    it (pinned tags read neither pachd nor the last state, test_pinned_serves_the_job_id_as_one_predictor), each
    handed a deep copy."""
    if stack not in _PINNED_CANARIES:
        _PINNED_CANARIES[stack] = run_program(stack, {"serving:modelTag": OLD, "serving:canaryTag": NEW})
    return copy.deepcopy(_PINNED_CANARIES[stack])


@pytest.mark.parametrize("stack", STACKS)
def test_the_canary_ingress_sends_the_same_share_to_the_canary_service(stack: str, pachd: FakePachd) -> None:
    run = pinned_canary(stack)
    canary = next(r for r in run.of_type(INGRESS) if r.inputs["metadata"]["name"] == "issue-summarization-canary")
    annotations = canary.inputs["metadata"]["annotations"]
    assert annotations == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "10",
    }
    paths = canary.inputs["spec"]["rules"][0]["http"]["paths"]
    main = next(r for r in run.of_type(INGRESS) if r.inputs["metadata"]["name"] == "issue-summarization")
    assert paths[0]["path"] == main.inputs["spec"]["rules"][0]["http"]["paths"][0]["path"]  # same route, other backend
    assert paths[0]["backend"]["service"]["name"] == "issue-summarization-canary"  # Seldon: <sdep>-<predictor>


@pytest.mark.parametrize("stack", STACKS)
def test_a_canary_stack_renders_valid_objects_and_passes_the_policy_pack(
    stack: str, pachd: FakePachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pack's policies as tests/delivery/test_policies_on_stacks.py runs them, on the canary's extra objects."""
    from policy import pack
    from tests.delivery.test_policies import run_policy

    monkeypatch.setattr(pack, "current_stack", lambda: stack)
    monkeypatch.setattr(pack, "stack_registry_password", lambda: harness.TEST_PASSWORD)
    run = pinned_canary(stack)
    for manifest in run.manifests():
        if manifest["kind"] == "Ingress":
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        if manifest["kind"] == "SeldonDeployment":
            assert errors(seldon_deployment_validator(), manifest) == []
    found = {
        f"{policy.name}: {r.type_} {r.name}": reported
        for r in run
        if not r.read
        for policy in pack.POLICIES
        if (reported := run_policy(policy.name, r.type_, r.inputs, urn=r.urn))
    }
    assert found == {}


@pytest.mark.parametrize("stack", STACKS)
def test_promoting_the_canary_leaves_one_predictor_and_no_canary_traffic(stack: str, pachd: FakePachd) -> None:
    run = run_program(stack, {"serving:modelTag": NEW, "serving:canaryTag": NEW})
    assert predictors(run) == [("default", f"{image_repo(stack)}:{NEW}", None, 2)]
    canary = next(r for r in run.of_type(INGRESS) if r.inputs["metadata"]["name"] == "issue-summarization-canary")
    assert canary.inputs["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "0"


def _paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            p
            for key in sorted(set(old) | set(new))
            for p in _paths(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
        ]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new, strict=True)) for p in _paths(a, b, f"{prefix}[{i}]")]
    return [] if old == new else [prefix]


@pytest.mark.parametrize("stack", STACKS)
def test_a_new_export_changes_only_the_image_so_the_deployment_is_updated_in_place(
    stack: str, pachd: FakePachd
) -> None:
    """pulumi-kubernetes replaces an object only when a force-new field changes: `.metadata.name` and
    `.metadata.namespace` for every kind, plus per-kind lists that have no entry for machinelearning.seldon.io
    (forceNewProperties in provider/pkg/provider/diff.go, pulumi/pulumi-kubernetes v4.32.0). A new export changes
    neither, so the preview shows `~ update` of spec...image, not a replacement."""
    add_commit_set(pachd, OLD, image_repo(stack))
    before = deployment(run_program(stack, {"serving:modelTag": "latest"}, preview=True))
    add_commit_set(pachd, NEW, image_repo(stack))
    after = deployment(run_program(stack, {"serving:modelTag": "latest"}, preview=True))
    assert after.urn == before.urn  # the same resource: Pulumi diffs it, it does not create another
    changed = _paths(before.inputs, after.inputs)
    # the image, and with it the pod spec's rollout name and the wait that names it (infra/serving.py, wait_for):
    # neither is a force-new field
    assert changed == [
        "metadata.annotations.pulumi.com/waitFor",
        "spec.predictors[0].componentSpecs[0].metadata.name",
        "spec.predictors[0].componentSpecs[0].spec.containers[0].image",
    ]
    assert after.inputs["metadata"]["name"] == before.inputs["metadata"]["name"] == "issue-summarization"


@pytest.mark.parametrize("stack", STACKS)
def test_pachd_unreachable_keeps_the_last_deployed_model(
    stack: str, pachd: FakePachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = [
        {
            "predictor": "default",
            "image": f"{image_repo(stack)}:{OLD}",
            "job_id": OLD,
            "traffic": 100,
            "source": "latest export (serving:modelTag)",
        }
    ]
    monkeypatch.setattr(_StackMocks, "previous_outputs", {"serving_models": last})
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    pachd.fail_next("list_commit", grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    run = run_program(stack, {"serving:modelTag": "latest"}, preview=True)
    assert predictors(run) == [("default", f"{image_repo(stack)}:{OLD}", None, 2)]
    assert any(
        "cannot reach pachd" in w and f"keeping the last deployed model {image_repo(stack)}:{OLD}" in w
        for w in warnings
    )
    reference = run.one(STACK_REFERENCE)
    assert reference.inputs["name"] == f"organization/issue-titles/{stack}"  # the stack itself


def test_a_canary_without_a_model_is_a_config_error(pachd: FakePachd) -> None:
    with pytest.raises(ConfigError, match="`serving:canaryTag` is set but `serving:modelTag` is not"):
        run_program("minikube", {"serving:canaryTag": NEW})


@pytest.mark.parametrize("key", ["modelTag", "canaryTag"])
def test_a_tag_that_is_no_docker_tag_is_refused_naming_the_key_and_latest(key: str, pachd: FakePachd) -> None:
    """Read and checked once, by load_config: the same rule and message for both keys."""
    with pytest.raises(ConfigError) as raised:
        run_program("minikube", {"serving:modelTag": OLD, f"serving:{key}": "-bad/tag"})
    assert str(raised.value).startswith(f"invalid `serving:{key}` '-bad/tag': use an export job ID")
    assert "or `latest`" in str(raised.value)


@pytest.mark.parametrize("value", ["0", "100", "ten"])
def test_canary_traffic_must_be_a_percent_between_1_and_99(value: str, pachd: FakePachd) -> None:
    with pytest.raises(ConfigError, match="invalid `serving:canaryTraffic`"):
        run_program("minikube", {"serving:modelTag": OLD, "serving:canaryTag": NEW, "serving:canaryTraffic": value})


_UNREACHABLE_FIRST_DEPLOY = """
import grpc
from infra import pachd
from tests.infra import harness
from tests.infra.fake_pachd import FakePachd
from tests.infra.test_rollout_program import _StackMocks

fake = FakePachd()
fake.fail_next("list_commit", grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
pachd.connect = fake.connect
harness._Mocks = _StackMocks
try:
    harness.run_program("minikube", {"serving:modelTag": "latest"}, preview=True)
except Exception as error:
    print("STOPPED:", error)
"""


def test_pachd_unreachable_before_any_deployment_stops_the_preview_with_a_clear_message() -> None:
    """In its own process: a program that fails inside an apply leaves Pulumi's runtime unusable for the next
    evaluation in the same process (pending Output tasks), which would break the tests that follow."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _UNREACHABLE_FIRST_DEPLOY], cwd=harness.ROOT, capture_output=True, text=True, timeout=300
    )
    assert "STOPPED:" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert "cannot reach pachd at grpc://" in result.stdout
    assert "and this stack has deployed no model before" in result.stdout
    assert "pulumi config set serving:modelTag <export job ID>" in result.stdout
