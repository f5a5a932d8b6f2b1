"""The pipeline specs are valid Pachyderm 2.x requests and chain raw_data -> ... -> export."""

import jsonschema
import pytest
from pachyderm_sdk.api.pps import CreatePipelineRequest

from pipelines import PipelineSettings, SpecError, all_pipelines, input_leaves, spec_problems, validate_specs
from tests import schemas

CPU = PipelineSettings(
    stage_image="registry.example.com/stages:0123abcd", serving_image_repo="registry.example.com/serve"
)
# The tutorial's five whole-data steps (incremental off); the default is the incremental chain.
CLASSIC = PipelineSettings(
    stage_image="registry.example.com/stages:0123abcd",
    serving_image_repo="registry.example.com/serve",
    incremental=False,
)
GPU = PipelineSettings(
    stage_image="registry.example.com/stages:0123abcd",
    serving_image_repo="registry.example.com/serve",
    gpus=1,
    sample_size=None,
    epochs=12,
)
TFJOB = PipelineSettings(
    stage_image="registry.example.com/stages:0123abcd",
    serving_image_repo="registry.example.com/serve",
    gpus=1,
    trainer="tfjob",
    train_workers=3,
    epochs=5,
)


def by_name(settings):
    return {spec["pipeline"]["name"]: spec for spec in all_pipelines(settings)}


@pytest.mark.parametrize("settings", [CPU, CLASSIC, GPU, TFJOB], ids=["cpu", "classic", "gpu", "tfjob"])
def test_every_spec_validates_against_the_published_schema(settings):
    validator = jsonschema.Draft4Validator(schemas.load_json("pachyderm-CreatePipelineRequest.schema.json"))
    for spec in all_pipelines(settings):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(spec)]
        assert errors == [], spec["pipeline"]["name"]


@pytest.mark.parametrize("settings", [CPU, CLASSIC, GPU, TFJOB], ids=["cpu", "classic", "gpu", "tfjob"])
def test_every_spec_parses_into_the_sdk_request_without_losing_fields(settings):
    for spec in all_pipelines(settings):
        request = CreatePipelineRequest().from_dict(spec)
        assert request.pipeline.name == spec["pipeline"]["name"]
        assert request.transform.cmd == spec["transform"]["cmd"]
        assert request.transform.image == settings.stage_image
        assert request.reprocess_spec == settings.reprocess_spec


def test_the_default_is_the_incremental_chain_except_under_a_tfjob():
    assert [s["pipeline"]["name"] for s in all_pipelines(CPU)] == [
        "split", "vocabulary", "pre_process", "train", "build", "export"
    ]  # fmt: skip
    assert by_name(CPU)["split"]["input"]["pfs"]["glob"] == "/*"
    assert CPU.incremental is True and TFJOB.incremental is False
    assert [s["pipeline"]["name"] for s in all_pipelines(TFJOB)] == ["split", "pre_process", "train", "build", "export"]


def test_the_classic_pipelines_chain_in_the_tutorial_order():
    specs = all_pipelines(CLASSIC)
    assert [s["pipeline"]["name"] for s in specs] == ["split", "pre_process", "train", "build", "export"]
    assert specs[0]["input"]["pfs"]["repo"] == "raw_data"
    assert [i["pfs"]["repo"] for i in specs[3]["input"]["cross"]] == ["train", "split"]
    validate_specs(specs)


def test_gpu_is_requested_with_its_toleration_only_when_asked():
    assert "gpu" not in by_name(CPU)["train"]["resourceLimits"] and "tolerations" not in by_name(CPU)["train"]
    train = by_name(GPU)["train"]
    assert train["resourceLimits"]["gpu"] == {"type": "nvidia.com/gpu", "number": 1}
    assert {"key": "nvidia.com/gpu", "operator": "EXISTS", "effect": "NO_SCHEDULE"} in train["tolerations"]
    assert all("gpu" not in s.get("resourceLimits", {}) for n, s in by_name(GPU).items() if n != "train")


def test_every_pipeline_has_cpu_and_memory_requests_and_limits_and_pulls_with_the_registry_secret():
    for spec in all_pipelines(CPU):
        assert set(spec["resourceRequests"]) >= {"cpu", "memory"}, spec["pipeline"]["name"]
        assert set(spec["resourceLimits"]) >= {"cpu", "memory"}, spec["pipeline"]["name"]
        assert spec["transform"]["imagePullSecrets"] == ["registry-credentials"]


def test_export_mounts_the_registry_secret_and_carries_no_credential():
    export = by_name(CPU)["export"]
    assert export["transform"]["secrets"] == [
        {"name": "registry-credentials", "mountPath": "/var/run/secrets/registry"}
    ]
    assert export["transform"]["env"] == {"REGISTRY_AUTH_FILE": "/var/run/secrets/registry/.dockerconfigjson"}
    assert export["transform"]["cmd"][-2:] == ["--image", "registry.example.com/serve"]  # the job ID becomes the tag


def test_no_pipeline_asks_for_a_user_so_every_worker_runs_as_the_images_non_root_user():
    # pachyderm/pachyderm 2.12.x src/server/pps/server/worker_rc.go: a transform.user becomes the pod's RunAsUser
    # together with RunAsNonRoot: true and the user container's ReadOnlyRootFilesystem: true, so "0" (what the
    # kaniko export once asked for) is refused by the kubelet. Export now pushes through the registry API as uid 10001.
    for settings in (CPU, CLASSIC, TFJOB):
        assert [spec["transform"].get("user") for spec in all_pipelines(settings)] == [None] * len(
            all_pipelines(settings)
        )


def test_unset_training_knobs_leave_the_stage_defaults():
    assert by_name(CPU)["train"]["transform"]["cmd"][-2:] == ["--architecture", "default"]
    assert by_name(GPU)["train"]["transform"]["cmd"][-2:] == ["--epochs", "12"]
    assert "--sample-size" not in by_name(GPU)["split"]["transform"]["cmd"]


def test_the_model_size_reaches_the_train_command():
    small = PipelineSettings(stage_image="s:1", serving_image_repo="r/serve", embedding_dim=64, hidden_dim=128)
    assert by_name(small)["train"]["transform"]["cmd"][-4:] == ["--embedding-dim", "64", "--hidden-dim", "128"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_dim": 1}, "hidden_dim must be a whole number from 2 to 8,192"),
        ({"epochs": 10_001}, "epochs must be a whole number from 1 to 10,000"),
        ({"sample_size": 9}, "sample_size must be a whole number of 10 or more"),
        ({"architecture": "transformer"}, "architecture must be one of default, tutorial"),
        ({"gpus": -1}, "gpus must be a non-negative integer"),
        ({"serving_image_repo": "r/serve:v1"}, "serving_image_repo must be an image repository without a tag"),
        ({"stage_image": "Stages:1"}, "stage_image must be an image reference"),
        ({"registry_secret": "Bad_Name"}, "is not a Kubernetes secret name"),
        ({"test_fraction": 1.5}, "test_fraction must be between 0 and 1"),
    ],
)
def test_bad_settings_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        PipelineSettings(**{"stage_image": "s:1", "serving_image_repo": "r/serve", **changes})


def test_a_spec_reading_an_undeclared_repo_is_refused():
    specs = all_pipelines(CPU)
    specs[2]["input"] = {"pfs": {"repo": "nowhere", "glob": "/"}}
    with pytest.raises(SpecError, match="pipeline pre_process: input repo 'nowhere'"):
        validate_specs(specs)


def spec_with(**changes):
    spec = by_name(CPU)["build"]
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    "spec, problem",
    [
        (spec_with(transform={"image": "s:1", "cmd": []}), "pipeline build: transform.cmd must be a non-empty list"),
        (spec_with(transform={"cmd": ["stages"]}), "pipeline build: transform.image is required"),
        (spec_with(reprocessSpec="sometimes"), "pipeline build: reprocessSpec must be one of until_success, every_job"),
        (spec_with(input={"join": []}), "pipeline build: input type 'join' is not supported"),
        (spec_with(input={"pfs": {"repo": "train"}}), "pipeline build: pfs input train needs a glob"),
        (spec_with(input={"cross": []}), "pipeline build: cross input needs a non-empty list"),
        (
            spec_with(input={"cross": [{"pfs": {"repo": "split", "glob": "/"}}] * 2}),
            "pipeline build: input name(s) split used twice in a cross",
        ),
        ({"transform": {"image": "s:1", "cmd": ["x"]}}, "pipeline.name is missing"),
    ],
)
def test_the_one_validator_names_the_pipeline_and_the_field(spec, problem):
    (found,) = spec_problems(spec)
    assert found.startswith(problem)


def test_values_still_to_come_are_left_to_whoever_knows_them():
    later = object()
    spec = by_name(CPU)["build"]
    spec["transform"]["image"] = later
    spec["transform"]["cmd"][-1] = later
    assert spec_problems(spec)  # an unknown image is not a string
    assert spec_problems(spec, pending=lambda value: value is later) == []


def test_the_walker_visits_every_leaf_of_a_cross_in_order():
    assert [leaf["repo"] for leaf in input_leaves(by_name(CPU)["build"]["input"], "build")] == ["train", "split"]


def test_with_trainer_tfjob_the_train_pipeline_is_s3_enabled_and_launches_the_tfjob():
    """No `tfJob` field (Pachyderm 2.12 refuses it): the worker runs `stages launch-tfjob`, its input and output go
    through the S3 gateway, and its pod runs under the trainer account that may manage TFJobs."""
    import json

    from pipelines.specs import TRAINER_SERVICE_ACCOUNT

    train = by_name(TFJOB)["train"]
    assert "tfJob" not in train
    assert train["input"]["pfs"] | {"s3": True, "glob": "/", "name": "pre_process"} == train["input"]["pfs"]
    assert train["s3Out"] is True
    cmd = train["transform"]["cmd"]
    assert cmd[:2] == ["stages", "launch-tfjob"]
    flag = {cmd[i]: cmd[i + 1] for i in range(2, cmd.index("--"), 2)}
    assert flag["--workers"] == "3" and flag["--gpus"] == "1" and flag["--image"] == TFJOB.stage_image
    assert cmd[cmd.index("--") + 1 :] == ["--architecture", "default", "--epochs", "5"]
    assert json.loads(train["podPatch"]) == [
        {"op": "add", "path": "/serviceAccountName", "value": TRAINER_SERVICE_ACCOUNT}
    ]
    # The replicas take the GPU; the waiting worker neither asks for one nor needs the GPU pool's toleration.
    assert "gpu" not in train["resourceLimits"] and "tolerations" not in train


def test_the_tfjob_replicas_get_the_train_steps_resources():
    from pipelines.specs import TRAIN_LIMITS, TRAIN_REQUESTS

    cmd = by_name(TFJOB)["train"]["transform"]["cmd"]
    flag = {cmd[i]: cmd[i + 1] for i in range(2, cmd.index("--"), 2)}
    assert (flag["--cpu-request"], flag["--memory-request"]) == ("1", TRAIN_REQUESTS["memory"])
    assert (flag["--cpu-limit"], flag["--memory-limit"]) == ("4", TRAIN_LIMITS["memory"])
    assert by_name(CPU)["train"]["resourceLimits"] == TRAIN_LIMITS


def test_several_train_workers_need_trainer_tfjob():
    with pytest.raises(ValueError, match="train_workers > 1 needs trainer tfjob"):
        PipelineSettings(stage_image="i", serving_image_repo="r", train_workers=2)
    with pytest.raises(ValueError, match="trainer must be one of pipeline, tfjob"):
        PipelineSettings(stage_image="i", serving_image_repo="r", trainer="mpi")


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda spec: spec.update(tfJob={"tfJob": "{}"}), "embedding TFJobs in pipelines is not supported yet"),
        (lambda spec: spec["input"]["pfs"].update(glob="/*"), 'sets s3, so its glob must be "/"'),
        (lambda spec: spec["input"]["pfs"].update(lazy=True), "cannot set s3 with lazy"),
    ],
    ids=["tfJob", "s3-glob", "s3-lazy"],
)
def test_what_pachyderm_2_12_refuses_at_create_time_is_refused_here(change, problem):
    """pachyderm/pachyderm 2.12.x src/server/pps/server/api_server.go: validateInput and the tfJob check."""
    spec = by_name(TFJOB)["train"]
    change(spec)
    assert any(problem in found for found in spec_problems(spec))


def test_the_incremental_chain_and_tfjob_training_are_not_combined() -> None:
    """The incremental train reads the vocabulary and its previous output commit; a TFJob's replicas do neither."""
    from pipelines.settings import PipelineSettings

    with pytest.raises(ValueError, match="incremental needs trainer pipeline"):
        PipelineSettings(
            stage_image="registry.example.com/stages:0123abcd",
            serving_image_repo="registry.example.com/serve",
            incremental=True,
            trainer="tfjob",
        )
