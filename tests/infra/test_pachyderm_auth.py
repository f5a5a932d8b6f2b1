"""Pachyderm's own authentication: on, with a root token the stack pins, sends, and never shows.

Upstream, pachyderm/pachyderm 2.12.x (commit 7ed6c9f7b9, the branch the 2.12.2 chart was released from):
- etc/helm/pachyderm/values.yaml: `pachd.activateAuth: true`, `rootToken: ""`, `rootTokenSecretName: ""` (key
  `root-token`); templates/pachd/auth-secret.yaml: `root-token: {{ default (randAlphaNum 32) .Values.pachd.rootToken }}`
  unless `rootTokenSecretName` is set; templates/pachd/deployment.yaml: AUTH_ROOT_TOKEN from that Secret.
- src/server/auth/server/api_server.go, EnvBootstrap -> ActivateAuthEverywhere: activates auth with the root token
  at start, or rotates the root token to it when auth is already active.
- src/internal/middleware/auth/interceptor.go: CreateRepo, ListCommit, GetFile, CreatePipelineV2, DeletePipeline
  ... are `authDisabledOr(authenticated)`; src/auth/auth.go: ErrNotSignedIn / ErrBadToken are Unauthenticated.
- pachyderm_sdk 2.12.2 client.py (_build_metadata): the token travels as gRPC metadata `authn-token`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from infra import model_source, pachyderm_provider
from infra.config import ConfigError
from infra.operators import ROOT_TOKEN_KEY, ROOT_TOKEN_SECRET
from infra.pachyderm_provider import AUTH_TOKEN, PachydermError, PipelineProvider, RepoProvider
from pipelines import PipelineSettings, all_pipelines
from tests.infra.conftest import MODEL_TAG
from tests.infra.fake_pachd import FakePachd
from tests.infra.harness import TEST_ROOT_TOKEN, ProgramRun, plain_text_leaks, run_program, shared_run

RELEASE = "kubernetes:helm.sh/v3:Release"
DYNAMIC = "pulumi-python:dynamic:Resource"
ADDRESS = "grpc://pachd.test:30650"
TOKEN = "0123456789abcdef0123456789abcdef"
LEAK_FORMS = (TEST_ROOT_TOKEN, base64.b64encode(TEST_ROOT_TOKEN.encode()).decode())
SETTINGS = PipelineSettings(
    stage_image="registry.example.com/stages@sha256:" + "ab" * 32, serving_image_repo="registry.example.com/serving"
)


def pachyderm_release(run: ProgramRun) -> Any:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == "pachyderm")


# --- the chart: auth on, the token pinned in our Secret ------------------------------------------------------------


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_auth_stays_on_with_the_root_token_pinned_in_a_secret_the_chart_reads(stack: str) -> None:
    run = shared_run(stack)
    release = pachyderm_release(run)
    pachd = release.inputs["values"]["pachd"]
    assert pachd["activateAuth"] is True
    assert pachd["rootTokenSecretName"] == ROOT_TOKEN_SECRET
    assert "rootToken" not in pachd  # never in the values: Helm keeps them in its release Secret, Pulumi in state
    secret = next(
        s for s in run.of_type("kubernetes:core/v1:Secret") if s.inputs["metadata"]["name"] == ROOT_TOKEN_SECRET
    )
    assert secret.inputs["metadata"]["namespace"] == "issue-titles"
    assert secret.inputs["stringData"] == {ROOT_TOKEN_KEY: TEST_ROOT_TOKEN}  # the key templates/pachd reads
    assert "stringData" in secret.secret_paths
    assert secret.urn in release.depends_on  # the Secret exists before pachd starts and reads it


def test_a_new_root_token_restarts_pachd_so_it_rotates_to_it() -> None:
    """EnvBootstrap runs at pachd's start; the pod annotation changes with the token, so the release rolls pachd."""
    first = pachyderm_release(shared_run("minikube"))
    second = pachyderm_release(run_program("minikube", root_token="another-root-token-for-rotation"))
    annotation = "issue-titles/root-token-sha256"
    assert (
        first.inputs["values"]["pachd"]["annotations"][annotation]
        == hashlib.sha256(TEST_ROOT_TOKEN.encode()).hexdigest()
    )
    assert first.inputs["values"]["pachd"]["annotations"] != second.inputs["values"]["pachd"]["annotations"]
    assert "values" not in first.secret_paths  # a hash only: the release's values stay readable in the diff


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_the_root_token_never_appears_in_plain_text_in_inputs_or_outputs(stack: str) -> None:
    run = shared_run(stack, {"serving:modelTag": MODEL_TAG})
    assert plain_text_leaks(run, LEAK_FORMS, secret_outputs_too=True) == []


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_the_repo_and_every_pipeline_get_the_token_as_a_secret(stack: str) -> None:
    resources = shared_run(stack).of_type(DYNAMIC)
    assert len(resources) == 7  # raw_data and the incremental chain's six pipelines
    for resource in resources:
        assert resource.inputs[AUTH_TOKEN] == TEST_ROOT_TOKEN
        assert AUTH_TOKEN in resource.secret_paths, resource.name


def test_missing_root_token_names_the_secret_command() -> None:
    with pytest.raises(ConfigError) as raised:
        run_program("gke-gpu", root_token=None)
    assert "missing secret `issue-titles:pachdRootToken`" in str(raised.value)
    assert "pulumi config set --secret issue-titles:pachdRootToken" in str(raised.value)


def test_plain_text_root_token_is_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        run_program("minikube", root_token_is_secret=False)
    assert "`issue-titles:pachdRootToken` is stored in plain text" in str(raised.value)
    assert TEST_ROOT_TOKEN not in str(raised.value)


# --- the provider and model_source send it (fake pachd with auth active) ---------------------------------------------


@pytest.fixture
def pachd(monkeypatch: pytest.MonkeyPatch) -> FakePachd:
    fake = FakePachd(address=ADDRESS, required_token=TOKEN)
    monkeypatch.setattr("infra.pachd.connect", fake.connect)
    return fake


def repo_props(token: str | None = TOKEN) -> dict[str, Any]:
    return {"pachd_address": ADDRESS, "project": "default", "name": "raw_data", "description": "", AUTH_TOKEN: token}


def pipeline_props(token: str | None = TOKEN) -> dict[str, Any]:
    spec = next(s for s in all_pipelines(SETTINGS) if s["pipeline"]["name"] == "split")
    return {"pachd_address": ADDRESS, "project": "default", "name": "split", "spec": spec, AUTH_TOKEN: token}


def test_every_provider_call_carries_the_token(pachd: FakePachd) -> None:
    RepoProvider().create(repo_props())
    PipelineProvider().create(pipeline_props())
    assert PipelineProvider().read("default/split", pipeline_props()).id == "default/split"
    PipelineProvider().delete("default/split", pipeline_props())
    RepoProvider().delete("default/raw_data", repo_props())
    assert pachd.tokens == [TOKEN] * 5
    assert [c.method for c in pachd.calls] == [
        "create_repo",
        "create_pipeline_v2",
        "inspect_pipeline",
        "delete_pipeline",
        "delete_repo",
    ]


@pytest.mark.parametrize("provider, props", [(RepoProvider, repo_props), (PipelineProvider, pipeline_props)])
@pytest.mark.parametrize("token", [None, ""])
def test_a_missing_token_stops_at_check_naming_the_config_key(provider: Any, props: Any, token: str | None) -> None:
    failures = provider().check({}, props(token)).failures
    assert [f.property for f in failures] == [AUTH_TOKEN]
    assert "pulumi config set --secret issue-titles:pachdRootToken" in failures[0].reason


def test_a_token_pachd_refuses_fails_clearly_without_showing_it(pachd: FakePachd) -> None:
    wrong = "wrong-token-must-not-be-shown"
    with pytest.raises(PachydermError) as raised:
        RepoProvider().create(repo_props(wrong))
    message = str(raised.value)
    assert "repo 'raw_data'" in message and "UNAUTHENTICATED" in message
    assert "provided auth token is corrupted or has expired" in message  # pachd's own words
    assert "issue-titles:pachdRootToken" in message
    assert wrong not in message and TOKEN not in message


def test_latest_reads_the_export_repo_with_the_token(pachd: FakePachd) -> None:
    model_source.newest_exported_model(ADDRESS, "registry.example.com/serving", auth_token=TOKEN)
    assert pachd.tokens == [TOKEN] and pachd.called("list_commit")


def test_latest_without_a_token_fails_clearly(pachd: FakePachd) -> None:
    with pytest.raises(PachydermError) as raised:
        model_source.newest_exported_model(ADDRESS, "registry.example.com/serving")
    assert "no authentication token (try logging in)" in str(raised.value)
    assert "pulumi config set --secret issue-titles:pachdRootToken" in str(raised.value)


# --- the real client on the wire: `authn-token` metadata --------------------------------------------------------------


class _Pachd:
    """A gRPC server on 127.0.0.1 answering pfs_v2.API/CreateRepo the way pachd with auth does."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.metadata: list[dict[str, str]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "pfs_v2.API",
                    {
                        "CreateRepo": grpc.unary_unary_rpc_method_handler(
                            self.create_repo, request_deserializer=lambda b: b, response_serializer=lambda _: b""
                        ),
                    },
                )
            ]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def create_repo(self, _request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        self.metadata.append(metadata)
        if "authn-token" not in metadata:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no authentication token (try logging in)")
        if metadata["authn-token"] != self.token:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "provided auth token is corrupted or has expired (try logging in again)",
            )
        return b""


@pytest.fixture
def real_pachd(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Pachd]:
    monkeypatch.delenv("PACH_PYTHON_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("PACH_PYTHON_OIDC_TOKEN", raising=False)
    server = _Pachd(TOKEN)
    server.server.start()
    yield server
    server.server.stop(None)


def test_the_sdk_client_sends_the_token_as_authn_token_metadata(real_pachd: _Pachd) -> None:
    address = f"grpc://127.0.0.1:{real_pachd.port}"
    RepoProvider().create({**repo_props(), "pachd_address": address})
    assert real_pachd.metadata[-1]["authn-token"] == TOKEN


def test_without_a_token_pachd_refuses_and_the_provider_says_which_key_to_set(
    real_pachd: _Pachd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACH_PYTHON_AUTH_TOKEN", "a-stray-token-from-the-environment")  # not used in its place
    address = f"grpc://127.0.0.1:{real_pachd.port}"
    with pytest.raises(PachydermError) as raised:
        pachyderm_provider._call_pachd(
            {"pachd_address": address},
            lambda client: client.pfs.create_repo(
                repo=pachyderm_provider._repo_message(repo_props()), description="", update=False
            ),
            what="repo 'raw_data'",
            action="create it",
        )
    assert real_pachd.metadata[-1].get("authn-token", "") == ""
    assert "UNAUTHENTICATED" in str(raised.value) and "issue-titles:pachdRootToken" in str(raised.value)


# --- `serving:modelTag latest` in the program ----------------------------------------------------------------------


def test_latest_in_the_program_reads_pachd_with_the_stacks_token_and_keeps_the_models_readable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.infra import harness
    from tests.infra.rollout_fixtures import add_commit_set
    from tests.infra.test_rollout_program import _StackMocks

    fake = FakePachd(required_token=TEST_ROOT_TOKEN)
    monkeypatch.setattr("infra.pachd.connect", fake.connect)
    monkeypatch.setattr(harness, "_Mocks", _StackMocks)
    monkeypatch.setattr(_StackMocks, "previous_outputs", {})
    repo = harness.stack_config("minikube")["serving:imageRepo"]
    add_commit_set(fake, "7" * 32, repo)
    run = run_program("minikube", {"serving:modelTag": "latest"}, preview=True)
    assert set(fake.tokens) == {TEST_ROOT_TOKEN}
    assert run.outputs["serving_models"][0]["image"] == f"{repo}:{'7' * 32}"
    # the token only opened the connection: the models, and the image diff of the preview, are not secret
    assert "serving_models" not in run.secret_outputs
    assert not run.one("kubernetes:machinelearning.seldon.io/v1:SeldonDeployment").secret_paths


def test_the_stack_says_how_pachctl_logs_in_without_showing_the_token(program: ProgramRun) -> None:
    assert (
        program.outputs["pachctl_login"]
        == "pulumi config get issue-titles:pachdRootToken | pachctl auth use-auth-token"
    )


def test_the_token_output_of_every_pachyderm_resource_is_kept_secret_in_the_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dynamic provider host takes no secrets (the engine hands it plain values): the program marks the
    `auth_token` output secret itself, so the state stores it encrypted."""
    from tests.infra import harness

    asked: dict[str, list[str]] = {}
    original = harness._RecordingMonitor.RegisterResource

    def spy(self: Any, request: Any) -> Any:
        if request.type == DYNAMIC:
            asked[request.name] = list(request.additionalSecretOutputs)
        return original(self, request)

    monkeypatch.setattr(harness._RecordingMonitor, "RegisterResource", spy)
    run_program("minikube")
    assert len(asked) == 7 and all(AUTH_TOKEN in names for names in asked.values()), asked
