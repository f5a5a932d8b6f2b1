"""Choosing the model to serve: the newest gated export read from the fake pachd at the SDK boundary, and the
pinned / latest / canary settings turned into predictors (no Pulumi engine needed)."""

from __future__ import annotations

import grpc
import pytest

from infra.config import ConfigError
from infra.model_source import ExportedModel, PachdUnreachable, Selection, newest_exported_model
from infra.pachyderm_provider import PachydermError
from infra.rollout import RolloutConfig, resolve
from tests.infra.fake_pachd import FakePachd
from tests.infra.rollout_fixtures import add_commit_set, provenance_json

REPO = "registry.example.com/issue-titles/serving"
ADDRESS = "grpc://pachd.test:30650"
OLD, NEW = "a" * 32, "b" * 32


@pytest.fixture
def pachd(monkeypatch: pytest.MonkeyPatch) -> FakePachd:
    fake = FakePachd(address=ADDRESS)
    monkeypatch.setattr("infra.pachd.connect", fake.connect)
    return fake


# --- the newest export that passed the gate, from pachd -------------------------------------------------------------


def test_the_newest_finished_export_is_selected_with_its_provenance(pachd: FakePachd) -> None:
    add_commit_set(pachd, OLD, REPO)
    add_commit_set(pachd, NEW, REPO)
    model = newest_exported_model(ADDRESS, REPO).model
    assert model is not None
    assert (model.image, model.job_id, model.build_commit, model.data_commit) == (f"{REPO}:{NEW}", NEW, NEW, NEW)
    assert model.metrics == {"model_rouge_l": 0.31, "lead_baseline_rouge_l": 0.22, "test_rows": 1300}
    assert pachd.connections == [ADDRESS]


def test_an_export_whose_build_failed_the_gate_is_never_selected(pachd: FakePachd) -> None:
    add_commit_set(pachd, OLD, REPO)
    # build refused the model (QualityGateError): Pachyderm closes the downstream export commit with an error
    add_commit_set(pachd, NEW, REPO, export_error="inputs failed: build job failed")
    selection = newest_exported_model(ADDRESS, REPO)
    assert selection.model is not None and selection.model.job_id == OLD
    assert selection.refused == [f"export@{NEW}: its job failed (inputs failed: build job failed)"]


def test_a_provenance_that_says_the_gate_failed_is_refused_by_name(pachd: FakePachd) -> None:
    add_commit_set(pachd, NEW, REPO, provenance=provenance_json(NEW, passed=False))
    selection = newest_exported_model(ADDRESS, REPO)
    assert selection.model is None
    assert selection.refused[0].startswith(f"export@{NEW}: the model did not pass the quality gate")


def test_an_export_whose_image_was_not_pushed_is_refused_by_name(pachd: FakePachd) -> None:
    add_commit_set(pachd, OLD, REPO)
    add_commit_set(pachd, NEW, REPO, image_changes={"pushed": False, "reason": "kaniko is not at /kaniko/executor"})
    selection = newest_exported_model(ADDRESS, REPO)
    assert selection.model is not None and selection.model.job_id == OLD
    assert selection.refused == [
        f"export@{NEW}: image {REPO}:{NEW} is missing from the registry (kaniko is not at /kaniko/executor)"
    ]


def test_an_image_in_another_repository_is_refused_by_name(pachd: FakePachd) -> None:
    add_commit_set(pachd, NEW, REPO, image_changes={"image": f"evil.example.com/serving:{NEW}"})
    refusal = newest_exported_model(ADDRESS, REPO).refused[0]
    assert refusal.startswith(f"export@{NEW}: image evil.example.com/serving:{NEW} is not {REPO}:{NEW}")


def test_an_export_whose_provenance_does_not_verify_is_refused_by_name(pachd: FakePachd) -> None:
    add_commit_set(pachd, NEW, REPO, exported_provenance=provenance_json(NEW, rouge_l=0.99))
    selection = newest_exported_model(ADDRESS, REPO)
    assert selection.model is None
    assert selection.refused[0].startswith(f"export@{NEW}: provenance does not verify: image.json records sha256")


def test_an_export_still_running_is_not_selected(pachd: FakePachd) -> None:
    add_commit_set(pachd, OLD, REPO)
    add_commit_set(pachd, NEW, REPO, finished=False)
    selection = newest_exported_model(ADDRESS, REPO)
    assert selection.model is not None and selection.model.job_id == OLD
    assert selection.refused == [f"export@{NEW}: its job has not finished"]


def test_no_export_repo_yet_selects_nothing(pachd: FakePachd) -> None:
    selection = newest_exported_model(ADDRESS, REPO)
    assert selection.model is None and "repo export does not exist yet" in selection.refused[0]


def test_pachd_unreachable_is_its_own_error_naming_the_address(pachd: FakePachd) -> None:
    pachd.fail_next("list_commit", grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    with pytest.raises(PachdUnreachable, match=f"cannot reach pachd at {ADDRESS} to read the newest `export`"):
        newest_exported_model(ADDRESS, REPO)


def test_other_pachd_errors_say_what_failed(pachd: FakePachd) -> None:
    add_commit_set(pachd, NEW, REPO)
    pachd.fail_next("list_commit", grpc.StatusCode.PERMISSION_DENIED, "not authorized")
    with pytest.raises(PachydermError, match=r"reading the `export` commits .* not authorized"):
        newest_exported_model(ADDRESS, REPO)


def test_the_scan_reads_through_the_sdk_pfs_api_only(pachd: FakePachd) -> None:
    add_commit_set(pachd, NEW, REPO)
    newest_exported_model(ADDRESS, REPO)
    assert {call.method for call in pachd.calls} <= {"list_commit", "inspect_commit", "get_file"}
    assert pachd.called("list_commit")[0]["repo"].name == "export"


# --- settings -> predictors -----------------------------------------------------------------------------------------


def found(job_id: str) -> Selection:
    return Selection(
        ExportedModel(
            job_id=job_id,
            image=f"{REPO}:{job_id}",
            export_commit=job_id,
            build_commit=job_id,
            data_commit="c" * 32,
            metrics={"model_rouge_l": 0.3},
        )
    )


def never(_address: str, _repo: str) -> Selection:
    raise AssertionError("a pinned rollout must not ask pachd")


def unreachable(address: str, _repo: str) -> Selection:
    raise PachdUnreachable(f"cannot reach pachd at {address}")


def test_pinned_serves_the_job_id_without_asking_pachd() -> None:
    models = resolve(RolloutConfig(model=OLD), REPO, ADDRESS, lookup=never)
    assert [(m["predictor"], m["image"], m["traffic"]) for m in models] == [("default", f"{REPO}:{OLD}", 100)]


def test_latest_serves_the_newest_gated_export_with_its_provenance() -> None:
    [model] = resolve(RolloutConfig(model="latest"), REPO, ADDRESS, lookup=lambda *_: found(NEW))
    assert model["image"] == f"{REPO}:{NEW}" and model["job_id"] == NEW
    assert model["data_commit"] == "raw_data@" + "c" * 32 and model["metrics"] == {"model_rouge_l": 0.3}


def test_a_canary_takes_its_share_next_to_the_main_model() -> None:
    models = resolve(
        RolloutConfig(model=OLD, canary="latest", canary_traffic=20), REPO, ADDRESS, lookup=lambda *_: found(NEW)
    )
    assert [(m["predictor"], m["job_id"], m["traffic"]) for m in models] == [("default", OLD, 80), ("canary", NEW, 20)]


def test_a_canary_equal_to_the_main_model_is_promoted_to_one_predictor() -> None:
    warnings: list[str] = []
    models = resolve(RolloutConfig(model=NEW, canary=NEW), REPO, ADDRESS, lookup=never, warn=warnings.append)
    assert [(m["predictor"], m["job_id"], m["traffic"]) for m in models] == [("default", NEW, 100)]
    assert "pulumi config rm serving:canaryTag" in warnings[0]


def test_pachd_unreachable_keeps_the_last_deployed_model_and_says_so() -> None:
    previous = [{"predictor": "default", "image": f"{REPO}:{OLD}", "job_id": OLD, "traffic": 100, "source": "x"}]
    warnings: list[str] = []
    [model] = resolve(RolloutConfig(model="latest"), REPO, ADDRESS, previous, lookup=unreachable, warn=warnings.append)
    assert model["image"] == f"{REPO}:{OLD}" and model["source"] == "last deployed (kept: pachd unreachable)"
    assert warnings == [
        f"`serving:modelTag` is `latest` but cannot reach pachd at {ADDRESS}: keeping the last "
        f"deployed model {REPO}:{OLD}"
    ]


def test_pachd_unreachable_before_any_deployment_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot reach pachd at .* and this stack has deployed no model before"):
        resolve(RolloutConfig(model="latest"), REPO, ADDRESS, None, lookup=unreachable)


def test_no_gated_export_keeps_the_last_deployed_model() -> None:
    previous = [{"predictor": "default", "image": f"{REPO}:{OLD}", "job_id": OLD, "traffic": 100, "source": "x"}]
    refused = Selection(None, [f"export@{NEW}: its job failed (inputs failed)"])
    warnings: list[str] = []
    [model] = resolve(
        RolloutConfig(model="latest"), REPO, ADDRESS, previous, lookup=lambda *_: refused, warn=warnings.append
    )
    assert model["image"] == f"{REPO}:{OLD}"
    assert warnings[0] == f"not serving export@{NEW}: its job failed (inputs failed)"


@pytest.mark.cluster
def test_the_newest_export_is_read_from_a_real_pachd() -> None:
    """With PACHD_ADDRESS set (a cluster where the pipelines ran), the real SDK calls answer: a model or refusals."""
    import os

    address = os.environ.get("PACHD_ADDRESS")
    if not address:
        pytest.skip("set PACHD_ADDRESS (e.g. grpc://$(minikube ip):30080) to run against a real pachd")
    selection = newest_exported_model(address, os.environ.get("SERVING_IMAGE_REPO", REPO))
    assert selection.model is not None or selection.refused
