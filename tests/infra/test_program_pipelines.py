"""The pipelines the program creates in each stack: valid Pachyderm 2.x specs, wired to the stack's images."""

from __future__ import annotations

import json

from pachyderm_sdk.api.pps import CreatePipelineRequest

from tests.infra.harness import ProgramRun, run_program
from tests.infra.schemas import errors, pipeline_spec_validator

# The default: the incremental chain (pipelines/incremental.py); a TFJob trainer keeps the five whole-data steps.
PIPELINES = ["split", "vocabulary", "pre_process", "train", "build", "export"]


def specs(run: ProgramRun) -> dict[str, dict]:
    found = {}
    for resource in run.of_type("pulumi-python:dynamic:Resource"):
        spec = resource.inputs.get("spec")
        if spec:
            found[spec["pipeline"]["name"]] = spec
    return found


def test_the_incremental_chains_six_pipelines_are_created(program: ProgramRun) -> None:
    assert sorted(specs(program)) == sorted(PIPELINES)
    assert program.outputs["pipelines"] == PIPELINES


def test_every_spec_validates_against_the_create_pipeline_request_schema(program: ProgramRun) -> None:
    for name, spec in specs(program).items():
        assert errors(pipeline_spec_validator(), spec) == [], name


def test_every_spec_parses_into_the_sdk_create_pipeline_request(program: ProgramRun) -> None:
    for name, spec in specs(program).items():
        request = CreatePipelineRequest().from_json(json.dumps(spec))
        assert request.pipeline.name == name
        assert request.transform.cmd == spec["transform"]["cmd"]


def test_every_step_runs_the_stage_image_built_by_this_stack_pinned_by_digest(program: ProgramRun) -> None:
    for spec in specs(program).values():
        assert spec["transform"]["image"] == program.outputs["stage_image"]
    build_cmd = specs(program)["build"]["transform"]["cmd"]
    assert build_cmd[build_cmd.index("--base-image") + 1] == program.outputs["stage_image"]


def test_both_stacks_train_on_every_row_and_build_only_a_model_that_beats_the_baseline(program: ProgramRun) -> None:
    assert "--sample-size" not in specs(program)["split"]["transform"]["cmd"]  # split's default: all rows
    build_cmd = specs(program)["build"]["transform"]["cmd"]
    assert "--allow-below-baseline" not in build_cmd  # build's default gate stays on
    assert build_cmd[build_cmd.index("--min-rouge-l") + 1] == "0.0"


def test_a_stack_can_ask_for_the_tutorials_sample_and_lift_the_baseline_gate() -> None:
    run = run_program("minikube", {"issue-titles:sampleSize": "2000", "issue-titles:beatBaseline": "false"})
    split_cmd = specs(run)["split"]["transform"]["cmd"]
    assert split_cmd[split_cmd.index("--sample-size") + 1] == "2000"
    assert "--allow-below-baseline" in specs(run)["build"]["transform"]["cmd"]


def test_train_requests_a_gpu_with_the_taint_toleration_only_on_the_gpu_stack(program: ProgramRun) -> None:
    train = specs(program)["train"]
    if program.stack == "gke-gpu":
        assert train["resourceLimits"]["gpu"] == {"type": "nvidia.com/gpu", "number": 1}
        assert {"key": "nvidia.com/gpu", "operator": "EXISTS", "effect": "NO_SCHEDULE"} in train["tolerations"]
    else:
        assert "gpu" not in train["resourceLimits"] and "tolerations" not in train
    others = [s for n, s in specs(program).items() if n != "train"]
    assert all("gpu" not in s["resourceLimits"] for s in others)


def test_export_pushes_to_the_serving_repo_with_the_mounted_registry_secret(program: ProgramRun) -> None:
    export = specs(program)["export"]["transform"]
    repo = (
        "docker.io/example/issue-titles-serving"
        if program.stack == "minikube"
        else "us-docker.pkg.dev/example-project/issue-titles/serving"
    )
    assert export["cmd"][-2:] == ["--image", repo]
    assert export["secrets"] == [{"name": "registry-credentials", "mountPath": "/var/run/secrets/registry"}]
    assert "password" not in json.dumps(export).lower()


def test_pipelines_are_created_through_the_stack_pachd_address(program: ProgramRun) -> None:
    addresses = {r.inputs["pachd_address"] for r in program.of_type("pulumi-python:dynamic:Resource")}
    assert addresses == {program.outputs["pachd_address"]}


def test_each_pipeline_depends_on_what_it_reads(program: ProgramRun) -> None:
    by_name = {r.inputs.get("name"): r for r in program.of_type("pulumi-python:dynamic:Resource")}
    for downstream, upstream in [
        ("split", "raw_data"),
        ("pre_process", "split"),
        ("train", "pre_process"),
        ("build", "train"),
        ("build", "split"),
        ("export", "build"),
    ]:
        assert by_name[upstream].urn in by_name[downstream].depends_on, f"{downstream} -> {upstream}"
