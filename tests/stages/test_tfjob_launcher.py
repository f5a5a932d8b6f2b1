"""`stages launch-tfjob` against a fake Kubernetes API and a fake S3 gateway on 127.0.0.1
(tests/stages/fake_cluster.py): the TFJob it creates, how it follows and cleans up, how a failure fails the datum,
and what a replica reads and writes."""

import base64
import json
from pathlib import Path

import pytest

from issue_titles import tfjob
from issue_titles.contract import MODEL_FILES
from issue_titles.tfjob import KubeApi, ReplicaSpec, TFJobFailed, run_launch
from tests.stages.conftest import run_stages
from tests.stages.fake_cluster import FAILED, RUNNING, KubeState, S3State, fake_kube, fake_s3

JOB_ID = "job1"
SPEC = ReplicaSpec(
    image="registry.example.com/issue-titles/stages@sha256:" + "a" * 64,
    workers=2,
    image_pull_secret="registry-credentials",
    train_args=("--architecture", "default", "--epochs", "4"),
)
TOKEN = "6d1c0b6e1f5a4c0e9a7b2d3c4e5f6a7b"  # the pipeline's Pachyderm token, as the worker hands it (auth on)
ENV = {
    "PACH_JOB_ID": JOB_ID,
    "S3_ENDPOINT": "http://s3-job1.issue-titles:600",
    "AWS_ACCESS_KEY_ID": TOKEN,
    "AWS_SECRET_ACCESS_KEY": TOKEN,
    "PACH_TOKEN": TOKEN,
}
SECRET_REFS = [
    {"name": key, "valueFrom": {"secretKeyRef": {"name": "train-job1-s3", "key": key}}}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
]


def pre_process_files(tiny_training: Path) -> dict[str, bytes]:
    """The run's tiny pre_process output (tests/conftest.py), as the S3 gateway serves a repo's files."""
    return {p.name: p.read_bytes() for p in (tiny_training / "pre_process").iterdir() if p.is_file()}


def assert_no_token(text: str) -> None:
    assert TOKEN not in text and base64.b64encode(TOKEN.encode()).decode() not in text


@pytest.fixture
def kube():
    """A fake Kubernetes API server with a fresh KubeState, per test (it stops at once: fake_cluster's poll)."""
    state = KubeState()
    server, url = fake_kube(state)
    yield state, KubeApi(url, state.token, state.namespace, verify=False)
    server.shutdown()


def test_the_worker_creates_its_jobs_tfjob_follows_it_and_deletes_it(kube, capsys) -> None:
    state, api = kube
    result = run_launch(SPEC, env=ENV, api=api, poll_seconds=0.01)

    assert result == {"tfjob": "train-job1", "state": "Succeeded", "workers": 2}
    [created] = state.created
    assert created["metadata"]["name"] == "train-job1" and created["metadata"]["namespace"] == "issue-titles"
    assert created["metadata"]["labels"]["pachyderm.io/job"] == JOB_ID
    worker = created["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2 and worker["restartPolicy"] == "Never"
    container = worker["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow"  # the container the operator puts TF_CONFIG into
    assert container["command"] == [
        "stages",
        "train",
        "--from-s3",
        "pre_process",
        "--input",
        "/tmp/input",
        "--to-s3",
        "out",
        "--output",
        "/tmp/output",
        "--architecture",
        "default",
        "--epochs",
        "4",
    ]
    assert {e["name"]: e.get("value") for e in container["env"]}["S3_ENDPOINT"] == ENV["S3_ENDPOINT"]
    assert state.deleted == ["train-job1"] and state.jobs == {}
    log = capsys.readouterr().out
    assert "TFJob train-job1: Running (TFJobRunning: TFJob is running.); Worker: 2 active" in log
    assert "TFJob train-job1: Succeeded (TFJobSucceeded: TFJob successfully completed.)" in log
    assert log.index("Succeeded") < log.index("TFJob train-job1 deleted")


def test_the_token_goes_into_a_secret_owned_by_the_tfjob_never_into_the_tfjob(kube, capsys) -> None:
    state, api = kube
    run_launch(SPEC, env=ENV, api=api, poll_seconds=0.01)

    [created] = state.created
    assert_no_token(json.dumps(created))
    container = created["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert [e for e in container["env"] if e["name"].startswith("AWS_")] == SECRET_REFS
    [secret] = state.secrets_created
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "train-job1-s3" and secret["metadata"]["namespace"] == "issue-titles"
    [owner] = secret["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "name": "train-job1",
        "uid": state.created_uids["train-job1"],
    }  # the uid the API server gave the TFJob
    assert {key: base64.b64decode(value).decode() for key, value in secret["data"].items()} == {
        "AWS_ACCESS_KEY_ID": TOKEN,
        "AWS_SECRET_ACCESS_KEY": TOKEN,
    }
    # created after the TFJob (it needs its uid), deleted before it
    kinds = [
        (method, "secrets" if "/secrets" in path else "tfjobs")
        for method, path in state.requests
        if method in ("POST", "DELETE")
    ]
    assert kinds == [("POST", "tfjobs"), ("POST", "secrets"), ("DELETE", "secrets"), ("DELETE", "tfjobs")]
    assert state.secrets_deleted == ["train-job1-s3"] and state.secrets == {} and state.collected == []
    out = capsys.readouterr()
    assert "Secret train-job1-s3 created" in out.out and "Secret train-job1-s3 deleted" in out.out
    assert_no_token(out.out + out.err)


def test_without_credentials_no_secret_is_made_and_nothing_references_one(kube) -> None:
    state, api = kube
    env = {key: value for key, value in ENV.items() if not key.startswith("AWS_")}
    run_launch(SPEC, env=env, api=api, poll_seconds=0.01)
    assert state.secrets_created == [] and not any("/secrets" in path for _, path in state.requests)
    container = state.created[0]["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert not [e for e in container["env"] if "valueFrom" in e]


def test_a_failed_tfjob_fails_the_datum_with_the_tfjobs_own_reason(kube, monkeypatch, capsys) -> None:
    state, api = kube
    state.script = [{}, RUNNING, FAILED]
    monkeypatch.setattr(tfjob.KubeApi, "in_cluster", classmethod(lambda cls, env=None: api))
    for key, value in (ENV | {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).items():
        monkeypatch.setenv(key, value)

    code = run_stages(
        "launch-tfjob", "--image", SPEC.image, "--workers", "2", "--poll-seconds", "0.01", "--", "--epochs", "4"
    )

    assert code == TFJobFailed.exit_code != 0  # a non-zero exit fails the datum
    out, err = capsys.readouterr()
    assert (
        "TFJob train-job1 failed: TFJobFailed: TFJob issue-titles/train-job1 has failed because 1 Worker "
        "replica(s) failed."
    ) in err
    assert state.deleted == ["train-job1"] and state.jobs == {}
    assert state.secrets_deleted == ["train-job1-s3"] and state.secrets == {}
    assert_no_token(out + err)


def test_a_tfjob_left_by_an_earlier_try_is_replaced(kube) -> None:
    state, api = kube
    state.jobs["train-job1"] = {"metadata": {"name": "train-job1"}, "spec": {"stale": True}}
    run_launch(SPEC, env=ENV, api=api, poll_seconds=0.01)
    assert state.deleted == ["train-job1", "train-job1"]  # the stale one, then ours when it finished
    assert len(state.created) == 1 and "stale" not in state.created[0]["spec"]


def test_a_secret_left_by_an_earlier_try_is_replaced(kube, capsys) -> None:
    """A stale Secret (say its TFJob was deleted by hand with orphan propagation) is replaced, without `get`."""
    state, api = kube
    state.secrets["train-job1-s3"] = {"metadata": {"name": "train-job1-s3"}, "data": {"stale": "eA=="}}
    run_launch(SPEC, env=ENV, api=api, poll_seconds=0.01)
    assert [s["metadata"]["name"] for s in state.secrets_created] == ["train-job1-s3"]
    assert "stale" not in state.secrets_created[0]["data"]
    assert state.secrets_deleted == ["train-job1-s3", "train-job1-s3"] and state.secrets == {}
    assert not any(method == "GET" and "/secrets" in path for method, path in state.requests)
    assert "Secret train-job1-s3 exists from an earlier try: replacing it" in capsys.readouterr().out


def test_a_stopped_worker_still_deletes_its_tfjob(kube) -> None:
    state, api = kube
    state.script = [RUNNING]
    calls = []

    def sleep(seconds: float) -> None:  # Pachyderm stops the job (SIGTERM -> KeyboardInterrupt) while it runs
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        tfjob.launch(
            api,
            tfjob.tfjob_manifest(SPEC, JOB_ID, state.namespace, ENV),
            log=lines.append,
            poll_seconds=0.01,
            sleep=sleep,
            secret=lambda created: tfjob.credentials_secret(JOB_ID, state.namespace, ENV, created),
        )
    assert state.deleted == ["train-job1"]
    assert state.secrets_deleted == ["train-job1-s3"] and state.secrets == {}
    assert_no_token("\n".join(lines))


def test_a_secret_the_launcher_could_not_delete_goes_with_its_tfjob(kube, monkeypatch, capsys) -> None:
    """The explicit delete fails (say the API hiccups): the TFJob's deletion still takes it (garbage collector)."""
    state, api = kube

    def refuse(name: str) -> bool:
        raise TFJobFailed("Kubernetes API refused to delete Secret: HTTP 500")

    monkeypatch.setattr(api, "delete_secret", refuse)
    run_launch(SPEC, env=ENV, api=api, poll_seconds=0.01)
    assert state.collected == ["train-job1-s3"] and state.secrets == {}
    assert "the garbage collector removes it with TFJob train-job1" in capsys.readouterr().out


def test_a_tfjob_that_never_ends_fails_after_the_timeout(kube) -> None:
    state, api = kube
    state.script = [RUNNING]
    with pytest.raises(TFJobFailed, match="did not finish within"):
        run_launch(SPEC, env=ENV, api=api, poll_seconds=0.01, timeout_seconds=0.05)
    assert state.deleted == ["train-job1"] and state.secrets_deleted == ["train-job1-s3"]


def test_the_api_refusing_the_tfjob_fails_with_its_message(kube) -> None:
    state, api = kube
    with pytest.raises(TFJobFailed, match="HTTP 401: Unauthorized"):
        run_launch(
            SPEC, env=ENV, api=KubeApi(api.base_url, "wrong-token", state.namespace, verify=False), poll_seconds=0.01
        )


def test_a_worker_outside_an_s3_enabled_pipeline_is_refused(kube) -> None:
    _, api = kube
    with pytest.raises(Exception, match="S3_ENDPOINT is not set"):
        run_launch(SPEC, env={"PACH_JOB_ID": JOB_ID}, api=api)


def test_gpus_per_worker_get_the_gpu_toleration_and_limit() -> None:
    manifest = tfjob.tfjob_manifest(ReplicaSpec(image="i", workers=3, gpus=1), JOB_ID, "ns", {})
    pod = manifest["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def gateway_buckets(tiny_training: Path) -> dict[str, dict[str, bytes]]:
    """What the S3 gateway serves a train replica: the run's tiny pre_process output, and an empty `out`."""
    return {"pre_process": pre_process_files(tiny_training), "out": {}}


def replica_train_args(tmp_path: Path) -> tuple:
    """The `stages train` a TFJob replica runs: from the gateway's pre_process bucket into its out bucket. The
    tutorial architecture: what is guarded is the way in and out through the gateway, the same for either, and its
    training traces in about half the time of the pointer-generator's."""
    return ("train", "--from-s3", "pre_process", "--input", tmp_path / "input", "--to-s3", "out",
            "--output", tmp_path / "output", "--architecture", "tutorial", "--epochs", "1", "--batch-size", "64",
            "--embedding-dim", "8", "--hidden-dim", "8")  # fmt: skip


def test_a_replica_trains_from_the_s3_gateway_and_the_chief_writes_the_model_into_out(
    tmp_path: Path, tiny_training: Path, monkeypatch
) -> None:
    state = S3State(buckets=gateway_buckets(tiny_training))
    server, url = fake_s3(state)
    monkeypatch.setenv("S3_ENDPOINT", url)
    try:
        code = run_stages(*replica_train_args(tmp_path))
    finally:
        server.shutdown()
    assert code == 0
    assert set(MODEL_FILES) <= set(state.buckets["out"])
    assert state.buckets["out"]["model.weights.h5"] == (tmp_path / "output" / "model.weights.h5").read_bytes()


def test_a_replica_trains_through_an_auth_on_gateway_with_the_secrets_credentials(
    tmp_path: Path, tiny_training: Path, monkeypatch
) -> None:
    """Pachyderm auth on: the gateway refuses unsigned requests; the replica's env (AWS_* from the Secret) signs."""
    state = S3State(tokens={TOKEN}, buckets=gateway_buckets(tiny_training))
    server, url = fake_s3(state)
    monkeypatch.setenv("S3_ENDPOINT", url)
    args = replica_train_args(tmp_path)
    try:
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        assert run_stages(*args) != 0  # unsigned: refused
        assert state.auth == ["AccessDenied"] and state.buckets["out"] == {}
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", TOKEN)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TOKEN)
        assert run_stages(*args) == 0
    finally:
        server.shutdown()
    assert set(MODEL_FILES) <= set(state.buckets["out"])
    assert set(state.auth[1:]) == {f"v4 {TOKEN}"}


@pytest.mark.cluster
def test_a_real_training_operator_fails_the_tfjob_and_the_launcher_reports_it_and_cleans_up() -> None:
    """TFJOB_TEST_API (e.g. `kubectl proxy` at http://127.0.0.1:8001), TFJOB_TEST_NAMESPACE and TFJOB_TEST_IMAGE (the
    stage image): the replica's S3 gateway does not exist, so its `stages train` fails, the operator marks the TFJob
    Failed, and the launcher must fail with the operator's own reason and leave no TFJob behind."""
    import os

    api_url, namespace, image = (
        os.environ.get(k) for k in ("TFJOB_TEST_API", "TFJOB_TEST_NAMESPACE", "TFJOB_TEST_IMAGE")
    )
    if not (api_url and namespace and image):
        pytest.skip("set TFJOB_TEST_API, TFJOB_TEST_NAMESPACE and TFJOB_TEST_IMAGE to run against a real cluster")
    api = KubeApi(api_url, os.environ.get("TFJOB_TEST_TOKEN", "unused-behind-kubectl-proxy"), namespace, verify=False)
    spec = ReplicaSpec(image=image, workers=1, memory_request="512Mi", cpu_request="250m")
    env = {"PACH_JOB_ID": "clustertest0", "S3_ENDPOINT": "http://s3-nowhere.invalid:600"}
    with pytest.raises(TFJobFailed, match="TFJobFailed"):
        run_launch(spec, env=env, api=api, poll_seconds=5, timeout_seconds=900)
    import time

    deadline = time.monotonic() + 60  # deletion is asynchronous (Background propagation)
    while api.get(tfjob.job_name("clustertest0")) is not None and time.monotonic() < deadline:
        time.sleep(2)
    assert api.get(tfjob.job_name("clustertest0")) is None
