"""`python -m infra.render STACK`: the offline render users run to see what `pulumi up` would create.

It prints the program's own resources for each committed stack, keeps the secrets masked unless asked, turns bad
input into a message and exit 2, and dials no address but a loopback pachd the user names.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
from typing import Any

import pytest
import yaml

from infra import render
from tests.infra.conftest import MODEL_TAG
from tests.infra.fake_pachd import FakePachd
from tests.infra.rollout_fixtures import add_commit_set

SELDON_DEPLOYMENT = "kubernetes:machinelearning.seldon.io/v1:SeldonDeployment"
LOOPBACK_PACHD = "grpc://127.0.0.1:30650"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    try:
        code = render.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rendered(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, *argv)
    assert code == 0, err
    return yaml.safe_load(out)


def of_type(resources: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["type"] == type_]


@pytest.fixture(scope="module")
def _evaluations() -> dict[str, render.ProgramRun]:
    return {}


@pytest.fixture
def one_evaluation_per_config(monkeypatch: pytest.MonkeyPatch, _evaluations: dict[str, render.ProgramRun]) -> None:
    """`render.run_program` evaluates the program once per (stack, overrides) in this module and hands out a deep copy.

    For the tests of what the CLI does with an evaluation (print it as YAML or JSON, mask or show the secrets, keep
    some kinds): that is render.render and main, which run as they are on every call. The evaluation is the same
    for the same config; that two evaluations print the same, order included, is
    test_json_and_yaml_print_the_same_resources_in_the_same_order's, which evaluates each time."""
    real = render.run_program

    def run_program(
        stack: str, config_overrides: dict[str, str | None] | None = None, **options: Any
    ) -> render.ProgramRun:
        if options:
            return real(stack, config_overrides, **options)
        key = json.dumps([stack, config_overrides or {}], sort_keys=True)
        if key not in _evaluations:
            _evaluations[key] = real(stack, config_overrides)
        return copy.deepcopy(_evaluations[key])

    monkeypatch.setattr(render, "run_program", run_program)


@pytest.fixture
def no_pachd(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the program tries to reach pachd at (none, unless a test says so)."""
    dialled: list[str] = []

    def refuse(address: str, auth_token: str | None = None) -> Any:
        dialled.append(address)
        raise AssertionError(f"the render dialled pachd at {address}")

    monkeypatch.setattr("infra.pachd.connect", refuse)
    return dialled


@pytest.mark.parametrize("stack", render.STACKS)
def test_prints_the_resources_the_program_declares_for_each_stack(
    stack: str, capsys: pytest.CaptureFixture[str], no_pachd: list[str], one_evaluation_per_config: None
) -> None:
    resources = rendered(capsys, stack)
    assert no_pachd == []  # a pinned (or no) model tag: the program reads nothing from pachd while it evaluates
    run = render.run_program(stack)
    assert sorted((r["type"], r["name"]) for r in resources) == sorted((r.type_, r.name) for r in run if not r.read)
    namespaces = {r["inputs"]["metadata"]["name"] for r in of_type(resources, "kubernetes:core/v1:Namespace")}
    assert {"issue-titles", "issue-titles-serving"} <= namespaces  # gke-gpu: ingress-nginx too
    releases = {r["name"] for r in of_type(resources, "kubernetes:helm.sh/v3:Release")}
    assert {"pachyderm", "seldon-core"} <= releases
    assert of_type(resources, "gcp:container/cluster:Cluster") if stack == "gke-gpu" else True
    assert not of_type(resources, SELDON_DEPLOYMENT)  # the stack as committed: no model exported yet
    registry = next(r for r in resources if r["type"] == "kubernetes:core/v1:Secret" and r["parent"] == "registry")
    assert registry["inputs"]["type"] == "kubernetes.io/dockerconfigjson"
    assert all(not key.startswith("__") for r in resources for key in r["inputs"])  # no pickled provider blobs


@pytest.mark.parametrize("stack", render.STACKS)
def test_the_secrets_stay_masked(
    stack: str, capsys: pytest.CaptureFixture[str], one_evaluation_per_config: None
) -> None:
    code, out, _ = cli(capsys, stack, "--format", "json")
    assert code == 0
    assert render.PLACEHOLDER_PASSWORD not in out and render.PLACEHOLDER_ROOT_TOKEN not in out
    resources = json.loads(out)
    secrets = [r for r in of_type(resources, "kubernetes:core/v1:Secret") if r["parent"] == "registry"]
    assert secrets and all(r["inputs"]["stringData"] == render.MASK for r in secrets)
    tokens = [r["inputs"]["auth_token"] for r in of_type(resources, "pulumi-python:dynamic:Resource")]
    assert tokens and set(tokens) == {render.MASK}


def test_show_secrets_prints_the_placeholders_where_they_flow(
    capsys: pytest.CaptureFixture[str], one_evaluation_per_config: None
) -> None:
    resources = rendered(capsys, "minikube", "--show-secrets")
    tokens = {r["inputs"]["auth_token"] for r in of_type(resources, "pulumi-python:dynamic:Resource")}
    assert tokens == {render.PLACEHOLDER_ROOT_TOKEN}
    registry = next(r for r in resources if r["type"] == "kubernetes:core/v1:Secret" and r["parent"] == "registry")
    assert render.PLACEHOLDER_PASSWORD in json.dumps(registry["inputs"]["stringData"])


def test_json_and_yaml_print_the_same_resources_in_the_same_order(capsys: pytest.CaptureFixture[str]) -> None:
    """Two renders of one config are equal, order included, so a diff of two renders shows only what changed."""
    code, out, _ = cli(capsys, "minikube", "--format", "json")
    assert code == 0
    assert json.loads(out) == rendered(capsys, "minikube")


def test_kind_keeps_only_that_kind_in_any_case(
    capsys: pytest.CaptureFixture[str], one_evaluation_per_config: None
) -> None:
    resources = rendered(capsys, "minikube", "--kind", "namespace", "--kind", "Release")
    assert sorted(r["inputs"].get("kind", r["type"]) for r in resources) == [
        "Namespace",
        "Namespace",
        "kubernetes:helm.sh/v3:Release",
        "kubernetes:helm.sh/v3:Release",
    ]


def test_a_kind_the_stack_has_not_is_exit_2_naming_the_kinds_it_has(
    capsys: pytest.CaptureFixture[str], one_evaluation_per_config: None
) -> None:
    code, out, err = cli(capsys, "minikube", "--kind", "Deploymnet")
    assert (code, out) == (2, "")
    assert "no resource of kind Deploymnet in stack minikube" in err and "Namespace" in err


@pytest.mark.parametrize("stack", render.STACKS)
def test_set_overrides_the_stacks_config(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    resources = rendered(
        capsys,
        stack,
        "--set",
        f"serving:modelTag={MODEL_TAG}",
        "--set",
        "serving:replicas=3",
        "--kind",
        "SeldonDeployment",
    )
    (deployment,) = of_type(resources, SELDON_DEPLOYMENT)
    (predictor,) = deployment["inputs"]["spec"]["predictors"]
    assert predictor["replicas"] == 3
    image = predictor["componentSpecs"][0]["spec"]["containers"][0]["image"]
    assert image == f"{render.stack_config(stack)['serving:imageRepo']}:{MODEL_TAG}"


def test_unset_removes_a_key_of_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "minikube", "--unset", "registry:server")
    assert code == 2
    assert "missing config `registry:server`" in err


def test_an_unknown_set_key_is_exit_2_with_the_key_it_meant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "minikube", "--set", "serving:replica=3")
    assert (code, out) == (2, "")
    assert "unknown config key `serving:replica`: did you mean `serving:replicas`?" in err


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("serving:replicas", "'serving:replicas': use KEY=VALUE"),
        ("replicas=3", "bad config key 'replicas': use namespace:name"),
        ("registry:password=hunter2", "`registry:password` is a secret"),
        ("issue-titles:pachdRootToken=abc", "`issue-titles:pachdRootToken` is a secret"),
    ],
)
def test_a_malformed_or_secret_set_is_exit_2(assignment: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "minikube", "--set", assignment)
    assert (code, out) == (2, "")
    assert message in err
    assert "hunter2" not in err


def test_a_value_the_program_refuses_is_exit_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "minikube", "--set", "serving:replicas=many")
    assert (code, out) == (2, "")
    assert "serving:replicas" in err


def test_an_unknown_stack_is_exit_2_naming_the_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "staging")
    assert code == 2
    assert "no stack 'staging'" in err and "gke-gpu, minikube" in err


@pytest.mark.parametrize("stack", render.STACKS)
def test_latest_without_a_loopback_pachd_is_refused_before_anything_is_dialled(
    stack: str, capsys: pytest.CaptureFixture[str], no_pachd: list[str]
) -> None:
    code, out, err = cli(capsys, stack, "--set", "serving:modelTag=latest")
    assert (code, out) == (2, "")
    assert "`serving:modelTag latest` reads the newest export from pachd" in err
    assert "--pachd-address grpc://127.0.0.1:30650" in err
    assert no_pachd == []


@pytest.mark.parametrize(
    "argv",
    [
        ("--pachd-address", "grpc://192.168.49.2:30080"),
        ("--pachd-address", "grpc://pachd.example.com:30650"),
        ("--set", "issue-titles:pachdAddress=grpc://10.0.0.5:30650"),
    ],
)
def test_a_pachd_address_past_this_machine_is_refused(
    argv: tuple[str, str], capsys: pytest.CaptureFixture[str], no_pachd: list[str]
) -> None:
    code, _, err = cli(capsys, "minikube", "--set", "serving:canaryTag=latest", "--set", "serving:modelTag=1", *argv)
    assert code == 2
    assert "only" in err and "127.0.0.1" in err
    assert no_pachd == []


def test_latest_with_a_loopback_pachd_serves_its_newest_export(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakePachd(required_token=render.PLACEHOLDER_ROOT_TOKEN)
    monkeypatch.setattr("infra.pachd.connect", fake.connect)
    repo = render.stack_config("minikube")["serving:imageRepo"]
    add_commit_set(fake, "7" * 32, repo)
    resources = rendered(
        capsys,
        "minikube",
        "--set",
        "serving:modelTag=latest",
        "--pachd-address",
        LOOPBACK_PACHD,
        "--kind",
        "SeldonDeployment",
    )
    assert set(fake.connections) == {LOOPBACK_PACHD}
    (deployment,) = of_type(resources, SELDON_DEPLOYMENT)
    containers = deployment["inputs"]["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"]
    assert containers[0]["image"] == f"{repo}:{'7' * 32}"


def test_runs_as_a_module() -> None:
    """What users type: `python -m infra.render`, from the repository root, printing YAML on stdout only."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.render",
            "gke-gpu",
            "--kind",
            "Ingress",
            "--set",
            f"serving:modelTag={MODEL_TAG}",
        ],
        cwd=render.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (ingress,) = yaml.safe_load(result.stdout)
    assert ingress["type"] == "kubernetes:networking.k8s.io/v1:Ingress"
    assert ingress["inputs"]["kind"] == "Ingress"


def test_a_loopback_pachd_that_does_not_answer_is_exit_1_with_the_programs_message() -> None:
    """The one address the render dials, closed: the program's own message, no traceback. In its own process: a
    program that fails inside an apply leaves Pulumi's runtime unusable for the next evaluation in the process."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"grpc://127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.render",
            "minikube",
            "--set",
            "serving:modelTag=latest",
            "--pachd-address",
            address,
        ],
        cwd=render.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert f"cannot reach pachd at {address}" in result.stderr
    assert "Traceback" not in result.stderr
