"""The Pachyderm dynamic provider against a fake pachd at the SDK boundary, the component under Pulumi mocks, and
(with PACHD_ADDRESS set) the provider against a real pachd."""

from __future__ import annotations

import base64
import copy
import inspect
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import grpc
import pulumi
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from infra import pachyderm_pipelines, pachyderm_provider
from infra.pachyderm_pipelines import PachydermPipelines, PachydermPipelinesArgs, pipeline_specs
from infra.pachyderm_provider import (
    UNKNOWN,
    PachydermError,
    PachydermPipeline,
    PachydermPipelineArgs,
    PipelineProvider,
    RepoProvider,
    changed_fields,
)
from pipelines import PipelineSettings, SpecError, all_pipelines
from tests.infra.fake_pachd import FakePachd, _Pfs, _Pps
from tests.infra.harness import ROOT

ADDRESS = "grpc://pachd.issue-titles.svc.cluster.local:30650"
IMAGE = "registry.example.com/issue-titles/stages@sha256:" + "ab" * 32
SETTINGS = PipelineSettings(stage_image=IMAGE, serving_image_repo="registry.example.com/issue-titles/serving")
TOKEN = "pachd-root-token-for-provider-tests"  # Pachyderm's auth is on: every resource carries the root token


def spec_of(name: str, settings: PipelineSettings = SETTINGS) -> dict[str, Any]:
    return next(s for s in all_pipelines(settings) if s["pipeline"]["name"] == name)


def pipeline_props(name: str = "train", spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    spec = spec or spec_of(name)
    return {
        "pachd_address": ADDRESS,
        "project": "default",
        "name": spec["pipeline"]["name"],
        "spec": spec,
        "auth_token": TOKEN,
        **extra,
    }


def repo_props(**extra: Any) -> dict[str, Any]:
    return {
        "pachd_address": ADDRESS,
        "project": "default",
        "name": "raw_data",
        "description": "raw",
        "auth_token": TOKEN,
        **extra,
    }


@pytest.fixture
def pachd(monkeypatch: pytest.MonkeyPatch) -> FakePachd:
    fake = FakePachd(address=ADDRESS)
    monkeypatch.setattr("infra.pachd.connect", fake.connect)
    return fake


def sent_request(pachd: FakePachd) -> dict[str, Any]:
    return json.loads(pachd.called("create_pipeline_v2")[-1]["create_pipeline_request_json"])


# --- create -----------------------------------------------------------------------------------------------------------


def test_create_sends_the_exact_spec_to_the_configured_pachd(pachd: FakePachd) -> None:
    result = PipelineProvider().create(pipeline_props())
    assert pachd.connections == [ADDRESS]
    assert sent_request(pachd) == spec_of("train")
    assert pachd.called("create_pipeline_v2")[0]["update"] is False
    assert result.id == "default/train"
    assert result.outs is not None and result.outs["spec"] == spec_of("train")


def test_create_sends_whole_numbers_as_integers_although_pulumi_hands_them_back_as_floats(pachd: FakePachd) -> None:
    spec = spec_of("train", PipelineSettings(stage_image=IMAGE, serving_image_repo="r.example.com/s", gpus=1))
    floated = copy.deepcopy(spec)
    floated["parallelismSpec"]["constant"] = 1.0
    floated["resourceLimits"]["gpu"]["number"] = 1.0
    PipelineProvider().create(pipeline_props(spec=floated))
    request = sent_request(pachd)
    assert type(request["parallelismSpec"]["constant"]) is int
    assert type(request["resourceLimits"]["gpu"]["number"]) is int


def test_create_places_a_spec_without_project_in_the_resource_project(pachd: FakePachd) -> None:
    spec = spec_of("split")
    del spec["pipeline"]["project"]
    PipelineProvider().create(pipeline_props(spec=spec, project="nlp"))
    assert sent_request(pachd)["pipeline"] == {"name": "split", "project": {"name": "nlp"}}


def test_create_repo_sends_the_repo_in_its_project(pachd: FakePachd) -> None:
    result = RepoProvider().create(repo_props())
    call = pachd.called("create_repo")[0]
    assert (call["repo"].name, call["repo"].type, call["repo"].project.name) == ("raw_data", "user", "default")
    assert call["update"] is False and call["description"] == "raw"
    assert result.id == "default/raw_data"


# --- diff -------------------------------------------------------------------------------------------------------------


def test_diff_of_an_unchanged_spec_is_no_change() -> None:
    olds = pipeline_props()
    news = pipeline_props()
    news["spec"]["parallelismSpec"]["constant"] = 1.0  # what Pulumi hands back for 1
    result = PipelineProvider().diff("default/train", olds, news)
    assert result.changes is False and result.replaces == [] and changed_fields(olds["spec"], news["spec"]) == []


def test_diff_of_a_changed_command_is_an_in_place_update_naming_transform_cmd() -> None:
    news = pipeline_props()
    news["spec"]["transform"]["cmd"] = news["spec"]["transform"]["cmd"] + ["--epochs", "3"]
    result = PipelineProvider().diff("default/train", pipeline_props(), news)
    assert result.changes is True
    assert result.replaces == []
    assert changed_fields(pipeline_props()["spec"], news["spec"]) == ["transform.cmd"]


def test_diff_of_a_new_gpu_limit_names_resource_limits_gpu() -> None:
    gpu = PipelineSettings(stage_image=IMAGE, serving_image_repo="registry.example.com/issue-titles/serving", gpus=1)
    result = PipelineProvider().diff("default/train", pipeline_props(), pipeline_props(spec=spec_of("train", gpu)))
    assert result.changes is True and result.replaces == []
    assert changed_fields(spec_of("train"), spec_of("train", gpu)) == ["resourceLimits.gpu", "tolerations"]


def test_renaming_a_pipeline_replaces_it() -> None:
    renamed = spec_of("train")
    renamed["pipeline"]["name"] = "train_v2"
    result = PipelineProvider().diff("default/train", pipeline_props(), pipeline_props(spec=renamed))
    assert result.changes is True and result.replaces == ["name"]
    assert "pipeline.name" in changed_fields(spec_of("train"), renamed)


def test_moving_a_pipeline_to_another_project_replaces_it() -> None:
    result = PipelineProvider().diff("default/train", pipeline_props(), {**pipeline_props(), "project": "nlp"})
    assert result.replaces == ["project"]


def test_an_image_not_yet_built_shows_as_a_change_of_transform_image() -> None:
    news = pipeline_props()
    news["spec"]["transform"]["image"] = UNKNOWN  # a preview before the stage image is pushed
    result = PipelineProvider().diff("default/train", pipeline_props(), news)
    assert result.changes is True and changed_fields(pipeline_props()["spec"], news["spec"]) == ["transform.image"]


def test_renaming_a_repo_replaces_it() -> None:
    result = RepoProvider().diff("default/raw_data", repo_props(), repo_props(name="issues"))
    assert result.changes is True and result.replaces == ["name"]


# --- update -----------------------------------------------------------------------------------------------------------


def test_update_of_the_command_updates_in_place_and_reprocesses(pachd: FakePachd) -> None:
    PipelineProvider().create(pipeline_props())
    news = pipeline_props()
    news["spec"]["transform"]["cmd"] = news["spec"]["transform"]["cmd"] + ["--epochs", "3"]
    result = PipelineProvider().update("default/train", pipeline_props(), news)
    call = pachd.called("create_pipeline_v2")[-1]
    assert call["update"] is True and call["reprocess"] is True
    assert sent_request(pachd)["transform"]["cmd"][-2:] == ["--epochs", "3"]
    assert result.outs is not None and result.outs["spec"] == news["spec"]


def test_update_of_resources_only_keeps_what_was_already_processed(pachd: FakePachd) -> None:
    news = pipeline_props()
    news["spec"]["resourceLimits"]["memory"] = "16Gi"
    PipelineProvider().update("default/train", pipeline_props(), news)
    call = pachd.called("create_pipeline_v2")[-1]
    assert call["update"] is True and call["reprocess"] is False


def test_update_of_an_every_job_pipeline_reprocesses(pachd: FakePachd) -> None:
    every_job = PipelineSettings(stage_image=IMAGE, serving_image_repo="r.example.com/s", reprocess_spec="every_job")
    olds = pipeline_props(spec=spec_of("train", every_job))
    news = copy.deepcopy(olds)
    news["spec"]["datumTries"] = 3
    PipelineProvider().update("default/train", olds, news)
    assert pachd.called("create_pipeline_v2")[-1]["reprocess"] is True


def test_update_follows_the_reprocess_input_when_set(pachd: FakePachd) -> None:
    news = pipeline_props(reprocess=False)
    news["spec"]["transform"]["cmd"] = ["stages", "train", "--help"]
    PipelineProvider().update("default/train", pipeline_props(), news)
    assert pachd.called("create_pipeline_v2")[-1]["reprocess"] is False


def test_a_new_pachd_address_alone_updates_the_state_without_calling_pachd(pachd: FakePachd) -> None:
    news = {**pipeline_props(), "pachd_address": "grpc://203.0.113.20:30650"}
    assert PipelineProvider().diff("default/train", pipeline_props(), news).changes is True
    result = PipelineProvider().update("default/train", pipeline_props(), news)
    assert pachd.calls == []
    assert result.outs is not None and result.outs["pachd_address"] == "grpc://203.0.113.20:30650"


def test_update_of_a_repo_description_updates_the_repo(pachd: FakePachd) -> None:
    RepoProvider().create(repo_props())
    RepoProvider().update("default/raw_data", repo_props(), repo_props(description="issues"))
    assert pachd.called("create_repo")[-1]["update"] is True
    assert pachd.repos[("default", "raw_data")] == "issues"


# --- delete and read --------------------------------------------------------------------------------------------------


def test_delete_removes_the_pipeline_and_its_output_repo(pachd: FakePachd) -> None:
    PipelineProvider().create(pipeline_props())
    PipelineProvider().delete("default/train", pipeline_props())
    call = pachd.called("delete_pipeline")[0]
    assert (call["pipeline"].name, call["pipeline"].project.name, call["keep_repo"]) == ("train", "default", False)
    assert pachd.pipelines == {} and pachd.repos == {}


def test_delete_of_a_pipeline_already_gone_succeeds(pachd: FakePachd) -> None:
    PipelineProvider().delete("default/train", pipeline_props())
    assert len(pachd.called("delete_pipeline")) == 1


def test_delete_tolerates_pachd_reporting_a_missing_pipeline_with_code_unknown(pachd: FakePachd) -> None:
    pachd.fail_next("delete_pipeline", grpc.StatusCode.UNKNOWN, "pipeline default/train not found")
    PipelineProvider().delete("default/train", pipeline_props())  # no PachydermError
    (call,) = pachd.called("delete_pipeline")
    assert call["pipeline"].name == "train" and call["must_exist"] is False


def test_delete_of_a_repo_already_gone_succeeds(pachd: FakePachd) -> None:
    RepoProvider().delete("default/raw_data", repo_props())
    assert len(pachd.called("delete_repo")) == 1


def test_delete_that_pachd_refuses_fails_with_the_reason(pachd: FakePachd) -> None:
    RepoProvider().create(repo_props())
    pachd.fail_next(
        "delete_repo", grpc.StatusCode.FAILED_PRECONDITION, "cannot delete repo raw_data: pipeline split reads from it"
    )
    with pytest.raises(PachydermError, match=r"repo 'raw_data'.*pipeline split reads from it"):
        RepoProvider().delete("default/raw_data", repo_props())


def test_read_of_a_pipeline_deleted_outside_pulumi_drops_it_from_the_state(pachd: FakePachd) -> None:
    assert PipelineProvider().read("default/train", pipeline_props()).id == ""


# --- errors -----------------------------------------------------------------------------------------------------------


def create_refused(pachd: FakePachd, code: grpc.StatusCode, details: str) -> str:
    """The message `create` fails with when pachd answers the pipeline's creation with `code` and `details`."""
    pachd.fail_next("create_pipeline_v2", code, details)
    with pytest.raises(PachydermError) as raised:
        PipelineProvider().create(pipeline_props())
    return str(raised.value)


def test_a_rejected_spec_names_the_pipeline_the_field_and_the_address(pachd: FakePachd) -> None:
    message = create_refused(
        pachd, grpc.StatusCode.INVALID_ARGUMENT, "invalid pipeline spec: request.Transform.Image cannot be empty"
    )
    assert message.startswith("pipeline 'train': pachd at " + ADDRESS + " rejected")
    assert "request.Transform.Image cannot be empty" in message
    assert "(field: transform.image)" in message


def test_a_rejected_reprocess_spec_names_that_field(pachd: FakePachd) -> None:
    details = "invalid pipeline spec: ReprocessSpec must be one of 'until_success' or 'every_job'"
    assert "(field: reprocessSpec)" in create_refused(pachd, grpc.StatusCode.UNKNOWN, details)


def test_an_unknown_field_is_named_as_pachd_parsed_it(pachd: FakePachd) -> None:
    details = 'proto: (line 1:412): unknown field "imagePullSecret"'
    assert "(field: imagePullSecret)" in create_refused(pachd, grpc.StatusCode.INVALID_ARGUMENT, details)


def test_an_unreachable_pachd_says_it_cannot_reach_it_and_what_to_check(pachd: FakePachd) -> None:
    message = create_refused(
        pachd,
        grpc.StatusCode.UNAVAILABLE,
        "failed to connect to all addresses; last error: UNKNOWN: Connection refused",
    )
    assert message.startswith(f"pipeline 'train': cannot reach pachd at {ADDRESS}")
    assert "Connection refused" in message and "issue-titles:pachdAddress" in message


def test_an_unreachable_pachd_fails_delete_rather_than_forgetting_the_pipeline(pachd: FakePachd) -> None:
    pachd.fail_next("delete_pipeline", grpc.StatusCode.UNAVAILABLE, "Connection refused")
    with pytest.raises(PachydermError, match="cannot reach pachd"):
        PipelineProvider().delete("default/train", pipeline_props())


def test_a_pipeline_that_already_exists_outside_the_stack_is_explained(pachd: FakePachd) -> None:
    PipelineProvider().create(pipeline_props())
    with pytest.raises(PachydermError, match="pipeline 'train': it already exists at pachd"):
        PipelineProvider().create(pipeline_props())


def test_an_unreachable_real_pachd_is_reported_by_address() -> None:
    """The real SDK client, no fake: port 9 on localhost refuses the connection at once."""
    address = "grpc://127.0.0.1:9"
    with pytest.raises(PachydermError, match=f"repo 'raw_data' .*cannot reach pachd at {address}"):
        RepoProvider().create(repo_props(pachd_address=address))


# --- check ------------------------------------------------------------------------------------------------------------


def failures(provider: Any, props: dict[str, Any]) -> dict[str, str]:
    return {f.property: f.reason for f in provider.check({}, props).failures}


def test_check_accepts_the_real_specs() -> None:
    for spec in all_pipelines(SETTINGS):
        assert failures(PipelineProvider(), pipeline_props(spec=spec)) == {}


def test_check_rejects_a_spec_without_pipeline_name() -> None:
    spec = spec_of("train")
    del spec["pipeline"]["name"]
    assert "pipeline.name is missing" in failures(PipelineProvider(), {**pipeline_props(), "spec": spec})["spec"]


def test_check_rejects_a_name_that_differs_from_the_spec() -> None:
    reasons = failures(PipelineProvider(), {**pipeline_props(), "name": "training"})
    assert reasons["name"] == "'training' differs from spec.pipeline.name 'train'"


def test_check_rejects_a_malformed_pachd_address() -> None:
    reasons = failures(RepoProvider(), repo_props(pachd_address="pachd:30650/api"))
    assert "use grpc://HOST:PORT" in reasons["pachd_address"]


def test_check_leaves_values_unknown_during_preview_alone() -> None:
    spec = spec_of("train")
    spec["transform"]["image"] = UNKNOWN
    assert failures(PipelineProvider(), pipeline_props(spec=spec, pachd_address=UNKNOWN)) == {}


# --- serialization ----------------------------------------------------------------------------------------------------


def test_the_fake_has_the_signatures_of_the_sdk_stubs() -> None:
    from pachyderm_sdk.api.pfs.extension import ApiStub as RealPfs
    from pachyderm_sdk.api.pps.extension import ApiStub as RealPps

    def params(fn: Any) -> list[str]:
        return [p for p in inspect.signature(fn).parameters if p != "self"]

    for fake, real in ((_Pfs, RealPfs), (_Pps, RealPps)):
        for name, method in inspect.getmembers(fake, inspect.isfunction):
            if not name.startswith("_"):
                assert params(method) == params(getattr(real, name)), name


def test_the_provider_pickles_with_dill_and_works_in_a_fresh_process(pachd: FakePachd) -> None:
    """What Pulumi stores and its provider process loads: the module's source (see BySource), not the test's fake."""
    blob = serialize_provider(PipelineProvider())
    assert b"fake_pachd" not in base64.b64decode(blob) and len(blob) < 100_000
    olds = json.dumps(pipeline_props())
    program = (
        "import base64, json, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.argv[1]))\n"
        "olds = json.loads(sys.argv[2]); news = json.loads(sys.argv[2])\n"
        "news['spec']['transform']['cmd'] = ['stages', 'train']\n"
        "print(type(provider).__name__, provider.diff('default/train', olds, news).changes)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, blob, olds], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PipelineProvider True"


# --- the component under Pulumi mocks ---------------------------------------------------------------------------------


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class _Recorder(pulumi_mocks.MockMonitor):
    """Keeps what the mocks drop: the registered type, dependencies and inputs of every resource."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        inputs = dict(rpc.deserialize_properties(request.object))
        self.registered[request.name] = {
            "type": request.type,
            "urn": response.urn,
            "parent": request.parent,
            "depends_on": set(request.dependencies),
            "inputs": inputs,
        }
        return response


@pytest.fixture
def recorder() -> _Recorder:
    pulumi.runtime.reset_options(project="issue-titles", stack="test")  # a fresh root Stack for set_mocks
    monitor = _Recorder(_Mocks())
    pulumi.runtime.set_mocks(_Mocks(), project="issue-titles", stack="test", preview=False, monitor=monitor)
    return monitor


class _Pachd(pulumi.CustomResource):
    def __init__(self, name: str) -> None:
        super().__init__("test:index:Pachd", name, {})


def deploy_pipelines() -> dict[str, Any]:
    """The component with the stage image as an Output and a caller's depends_on, as __main__.py wires it."""
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        pachd = _Pachd("pachd")
        settings = PipelineSettings(
            stage_image=pulumi.Output.from_input(IMAGE), serving_image_repo=SETTINGS.serving_image_repo
        )
        component = PachydermPipelines(
            "pipelines",
            PachydermPipelinesArgs(pachd_address=pulumi.Output.from_input(ADDRESS), settings=settings),
            pulumi.ResourceOptions(depends_on=[pachd]),
        )
        return pulumi.Output.all(component.repo, component.pipelines).apply(
            lambda v: outputs.update(repo=v[0], pipelines=v[1])
        )

    program()
    return outputs


def test_the_component_creates_raw_data_and_the_pipelines_with_their_specs(recorder: _Recorder) -> None:
    outputs = deploy_pipelines()
    assert outputs == {
        "repo": "raw_data",
        "pipelines": ["split", "vocabulary", "pre_process", "train", "build", "export"],
    }
    dynamic = {n: r for n, r in recorder.registered.items() if r["type"] == "pulumi-python:dynamic:Resource"}
    assert set(dynamic) == {
        "pipelines-raw_data",
        "pipelines-split",
        "pipelines-vocabulary",
        "pipelines-pre_process",
        "pipelines-train",
        "pipelines-build",
        "pipelines-export",
    }
    for spec in all_pipelines(SETTINGS):  # the stage image's Output resolved where the specs name it
        inputs = dynamic[f"pipelines-{spec['pipeline']['name']}"]["inputs"]
        assert pachyderm_provider.normalise(inputs["spec"]) == spec
        assert inputs["pachd_address"] == ADDRESS and inputs["project"] == "default"
    component = recorder.registered["pipelines"]
    assert component["type"] == "issue-titles:infra:PachydermPipelines"
    assert all(r["parent"] == component["urn"] for r in dynamic.values())


def test_each_pipeline_waits_for_what_it_reads_and_for_pachd(recorder: _Recorder) -> None:
    deploy_pipelines()
    urn = {name: r["urn"] for name, r in recorder.registered.items()}
    upstream = {
        "split": ["raw_data"],
        "vocabulary": ["split"],
        "pre_process": ["split", "vocabulary"],
        "train": ["pre_process", "vocabulary"],
        "build": ["train", "split"],
        "export": ["build"],
    }
    assert urn["pachd"] in recorder.registered["pipelines-raw_data"]["depends_on"]
    for pipeline, reads in upstream.items():
        depends_on = recorder.registered[f"pipelines-{pipeline}"]["depends_on"]
        assert {urn[f"pipelines-{repo}"] for repo in reads} | {urn["pachd"]} <= depends_on, pipeline


def test_a_spec_given_as_one_output_names_the_pipeline_once_it_resolves(recorder: _Recorder) -> None:
    @pulumi.runtime.test
    def program() -> None:
        PachydermPipeline(
            "whole-output",
            PachydermPipelineArgs(pachd_address=ADDRESS, spec=pulumi.Output.from_input(spec_of("train"))),
        )

    program()
    assert recorder.registered["whole-output"]["inputs"]["name"] == "train"


def test_another_project_holds_the_pipelines_and_the_repos_they_read() -> None:
    specs = pipeline_specs(PachydermPipelinesArgs(pachd_address=ADDRESS, settings=SETTINGS, project="nlp"))
    build = next(s for s in specs if s["pipeline"]["name"] == "build")
    assert build["pipeline"]["project"] == {"name": "nlp"}
    assert [item["pfs"]["project"] for item in build["input"]["cross"]] == ["nlp", "nlp"]


def test_a_spec_reading_a_repo_nothing_provides_stops_the_program_before_anything_is_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def misrouted(settings: PipelineSettings) -> list[dict[str, Any]]:
        specs = all_pipelines(settings)
        specs[2]["input"] = {"pfs": {"repo": "nowhere", "glob": "/"}}
        return specs

    monkeypatch.setattr(pachyderm_pipelines, "all_pipelines", misrouted)
    with pytest.raises(SpecError, match="pipeline pre_process: input repo 'nowhere' is neither raw_data"):
        pipeline_specs(PachydermPipelinesArgs(pachd_address=ADDRESS, settings=SETTINGS))


# --- a real pachd -----------------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_create_diff_update_delete_against_a_real_pachd() -> None:
    address = os.environ.get("PACHD_ADDRESS")
    if not address:
        pytest.skip("set PACHD_ADDRESS (e.g. grpc://$(minikube ip):30080) to run against a real pachd")
    from pachyderm_sdk import Client
    from pachyderm_sdk.api import pfs, pps

    client = Client.from_pachd_address(address)
    project = f"pulumi-test-{uuid.uuid4().hex[:8]}"
    client.pfs.create_project(project=pfs.Project(name=project))
    repo = {"pachd_address": address, "project": project, "name": "inbox", "description": "throwaway"}
    spec: dict[str, Any] = {
        "pipeline": {"name": "copy", "project": {"name": project}},
        "transform": {"image": "alpine:3.20", "cmd": ["sh", "-c", "cp -r /pfs/inbox/. /pfs/out/"]},
        "input": {"pfs": {"project": project, "repo": "inbox", "glob": "/"}},
        "reprocessSpec": "until_success",
    }
    props: dict[str, Any] = {"pachd_address": address, "project": project, "name": "copy", "spec": spec}
    pipeline = pps.Pipeline(name="copy", project=pfs.Project(name=project))
    try:
        RepoProvider().create(repo)
        assert PipelineProvider().create(props).id == f"{project}/copy"
        created = client.pps.inspect_pipeline(pipeline=pipeline, details=True)
        assert created.details.transform.cmd == spec["transform"]["cmd"]

        changed = copy.deepcopy(props)
        changed["spec"]["transform"]["cmd"] = ["sh", "-c", "cp -r /pfs/inbox/. /pfs/out/ && echo done"]
        assert PipelineProvider().diff(f"{project}/copy", props, changed).changes is True
        PipelineProvider().update(f"{project}/copy", props, changed)
        info = client.pps.inspect_pipeline(pipeline=pipeline, details=True)
        assert info.version == 2 and info.details.transform.cmd == changed["spec"]["transform"]["cmd"]

        PipelineProvider().delete(f"{project}/copy", changed)
        PipelineProvider().delete(f"{project}/copy", changed)  # already gone
        assert not client.pps.pipeline_exists(pipeline)
        RepoProvider().delete(f"{project}/inbox", repo)
        assert not client.pfs.repo_exists(pfs.Repo(name="inbox", type="user", project=pfs.Project(name=project)))
    finally:  # leave nothing behind, whatever failed
        client.pps.delete_pipelines(projects=[pfs.Project(name=project)], force=True)
        client.pfs.delete_repos(projects=[pfs.Project(name=project)], force=True)
        client.pfs.delete_project(project=pfs.Project(name=project), force=True)
