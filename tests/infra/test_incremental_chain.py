"""Both stacks render the incremental chain (issue 32) when asked: valid specs, the datum globs, parallel encoding,
the vocabulary reduce, train updating its previous output, and still within the resource budget."""

from __future__ import annotations

import json
from functools import cache

import pytest
from pachyderm_sdk.api.pps import CreatePipelineRequest

from pipelines import PipelineSettings, all_pipelines
from tests.infra import test_resource_budget as budget
from tests.infra.harness import ProgramRun, run_program
from tests.infra.schemas import errors, pipeline_spec_validator
from tests.infra.test_program_pipelines import specs

CHAIN = ["split", "vocabulary", "pre_process", "train", "build", "export"]


@cache
def incremental(stack: str, full: bool = False) -> ProgramRun:
    config: dict[str, str | None] = {"issue-titles:incremental": "true", "serving:modelTag": budget.MODEL_TAG}
    if full:
        config["issue-titles:fullRetrain"] = "true"
    return run_program(stack, config)


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_both_stacks_render_the_incremental_chain_as_valid_pipeline_requests(stack: str) -> None:
    run = incremental(stack)
    found = specs(run)
    assert sorted(found) == sorted(CHAIN) and run.outputs["pipelines"] == CHAIN
    for name, spec in found.items():
        assert errors(pipeline_spec_validator(), spec) == [], name
        assert CreatePipelineRequest().from_json(json.dumps(spec)).transform.cmd == spec["transform"]["cmd"]
    assert found["split"]["input"]["pfs"]["glob"] == "/*"  # one datum per raw file
    assert found["vocabulary"]["input"]["pfs"]["glob"] == "/"  # the reduce sees every shard
    assert [leaf["pfs"]["glob"] for leaf in found["pre_process"]["input"]["cross"]] == ["/*", "/vocab"]
    assert found["pre_process"]["parallelismSpec"]["constant"] == 2
    for name in ("vocabulary", "train", "build"):  # build: the previous bundle's decoding choice
        assert found[name]["transform"]["env"]["ISSUE_TITLES_PREVIOUS_OUTPUT"] == "parent-commit"
    assert found["build"]["transform"]["env"]["ISSUE_TITLES_PREVIOUS_FILES"] == "provenance.json"  # not the weights
    assert "ISSUE_TITLES_PREVIOUS_FILES" not in found["train"]["transform"]["env"]  # train reads the whole model
    assert "--full" not in found["train"]["transform"]["cmd"]


def test_the_full_retrain_key_makes_every_train_job_start_from_scratch() -> None:
    assert "--full" in specs(incremental("minikube", full=True))["train"]["transform"]["cmd"]


@pytest.mark.parametrize("stack", ["minikube", "gke-gpu"])
def test_the_incremental_chain_stays_within_the_resource_budget(stack: str, monkeypatch) -> None:
    gpus = 1 if stack == "gke-gpu" else 0
    chain = all_pipelines(
        PipelineSettings(stage_image="x/stages:1", serving_image_repo="x/serving", gpus=gpus, incremental=True)
    )
    # A job of a pipeline with N workers holds all N at once: count pre_process's workers together.
    monkeypatch.setattr(budget, "specs", lambda run: chain)
    monkeypatch.setattr(budget, "worker", _all_workers(budget.worker))
    run = incremental(stack)
    budget.served.cache_clear()
    monkeypatch.setattr(budget, "served", lambda _stack: run)
    if stack == "minikube":
        budget.test_minikube_holds_everything_at_rest_at_deploy_and_during_one_job()
    else:
        budget.test_gke_cpu_pool_holds_the_platform_and_any_cpu_stage()
        budget.test_gke_gpu_node_holds_the_training_worker_and_the_image_check()


def _all_workers(one):
    def workers(spec):
        count = spec.get("parallelismSpec", {}).get("constant", 1)
        cpu, memory = one(spec)
        return (cpu * count, memory * count)

    return workers
