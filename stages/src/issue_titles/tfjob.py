"""`stages launch-tfjob`: the `train` pipeline's worker hands its training to the Kubeflow training operator.

Pachyderm 2.12 refuses a pipeline spec's own `tfJob` field ("embedding TFJobs in pipelines is not supported yet",
pachyderm/pachyderm 2.12.x src/server/pps/server/api_server.go), so the pipeline stays an ordinary one whose
worker creates a TFJob for its job, through the Kubernetes API with the pipeline's service account:

- the pipeline is S3-enabled: its sidecar serves the job's `pre_process` commit and its output commit through an S3
  gateway at S3_ENDPOINT (s3io.py), which the replicas reach over the cluster network;
- every replica runs `stages train --from-s3 <input> ... --to-s3 out` with the TF_CONFIG the operator gives it
  (distributed.py); one replica trains alone, several data-parallel; the chief writes the model into the output
  commit, the same files `stages train` writes there without a TFJob;
- the replicas sign their S3 requests with the worker's credentials (with Pachyderm auth on, the pipeline's token;
  the gateway refuses unsigned requests then: pachyderm/pachyderm 2.12.x src/server/pfs/s3/auth.go). The token never
  goes into the TFJob: the launcher puts it in a Secret `train-<job>-s3` that the replicas' env references
  (`secretKeyRef`), owned by the TFJob so that Kubernetes' garbage collector removes it with the TFJob, and deletes
  it itself when it cleans up. The TFJob is created first and the Secret second, with the TFJob's uid as its owner:
  there is never a Secret without an owner (a launcher killed between the two calls leaves a TFJob whose pods wait
  in CreateContainerConfigError, which the datum's retry deletes, and with it anything it owns), and no `patch`
  right is needed. Until the Secret exists the kubelet keeps the replicas in CreateContainerConfigError and retries;
  the replicas never start without their credentials (the reference is not optional);
- the worker follows the TFJob's status into the job log, deletes the TFJob when it ends, and exits non-zero with the
  TFJob's own reason when it fails, so the datum fails (and Pachyderm retries it as `datumTries` says).

Without a Kubernetes API (`localpach`, no KUBERNETES_SERVICE_HOST) the same replicas run as local processes on
127.0.0.1 (distributed.run_local_workers), on the folders the local runner mounts.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from issue_titles.contract import STAGE_UID
from issue_titles.errors import StageError

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "tfjobs", "TFJob"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The container name the operator puts TF_CONFIG into, and its port (kubeflow/training-operator v1.9.0
# pkg/apis/kubeflow.org/v1/tensorflow_types.go TFJobDefaultContainerName, TFJobDefaultPortName, TFJobDefaultPort).
CONTAINER, PORT_NAME, PORT = "tensorflow", "tfjob-port", 2222
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# What a replica needs from the worker's environment to reach the S3 gateway (pachyderm 2.12.x worker/driver): the
# endpoint as a value, the credentials (the pipeline's Pachyderm token) only through the job's Secret.
PASSED_ENV = ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
CREDENTIAL_ENV = PASSED_ENV[1:]
SCRATCH = "/tmp"  # the replicas' one writable place (read-only root): input copy, output, caches
TERMINAL = ("Succeeded", "Failed")


class TFJobFailed(StageError):
    """The TFJob ended Failed (or could not run); the message carries the TFJob's own reason."""

    exit_code = 6


@dataclass(frozen=True)
class ReplicaSpec:
    """What every replica pod of the TFJob gets: the pipeline's image, resources, user and GPU toleration."""

    image: str
    workers: int = 1
    gpus: int = 0
    cpu_request: str = "1"
    memory_request: str = "4Gi"
    cpu_limit: str = "4"
    memory_limit: str = "12Gi"
    run_as_user: int = STAGE_UID
    image_pull_secret: str | None = None
    scratch_size: str = "8Gi"
    input_bucket: str = "pre_process"
    output_bucket: str = "out"
    train_args: tuple[str, ...] = field(default_factory=tuple)


def job_name(job_id: str) -> str:
    """`train-<Pachyderm job ID>`: one TFJob per job, a DNS-1123 label short enough for the pods' names."""
    name = "train-" + re.sub(r"[^a-z0-9-]", "-", job_id.lower())
    return name[:45].rstrip("-")


def secret_name(job_id: str) -> str:
    """`train-<Pachyderm job ID>-s3`: the S3 credentials of one job's replicas."""
    return job_name(job_id) + "-s3"


def has_credentials(env: Mapping[str, str]) -> bool:
    return all(env.get(key) for key in CREDENTIAL_ENV)


def credentials_secret(job_id: str, namespace: str, env: Mapping[str, str], owner: Mapping[str, Any]) -> dict:
    """The Secret holding the worker's S3 credentials for the replicas, owned by the TFJob `owner` (its name and
    uid as the API server returned them). Under the OwnerReferencesPermissionEnforcement admission plugin an owner
    reference needs `delete` on the Secret itself (the Role grants it) and blockOwnerDeletion needs more rights on the
    owner (kubernetes/kubernetes plugin/pkg/admission/gc/gc_admission.go): it is left unset, nothing has to wait for
    the Secret's deletion."""
    import base64

    metadata = owner["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(job_id),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "issue-titles",
                "app.kubernetes.io/component": "training",
                "pachyderm.io/job": job_id,
            },
            "ownerReferences": [
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": metadata["name"], "uid": metadata["uid"]}
            ],
        },
        "data": {key: base64.b64encode(env[key].encode()).decode() for key in CREDENTIAL_ENV},
    }


def replica_command(spec: ReplicaSpec) -> list[str]:
    """What each replica runs: the ordinary `stages train`, reading and writing through the S3 gateway."""
    return [
        "stages",
        "train",
        "--from-s3",
        spec.input_bucket,
        "--input",
        f"{SCRATCH}/input",
        "--to-s3",
        spec.output_bucket,
        "--output",
        f"{SCRATCH}/output",
        *spec.train_args,
    ]


def tfjob_manifest(spec: ReplicaSpec, job_id: str, namespace: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The TFJob for one Pachyderm job: `spec.workers` Worker replicas, no restarts (a failed replica fails the
    TFJob, the datum fails and Pachyderm retries it), the pipeline's limits, non-root user and read-only root."""
    resources: dict[str, Any] = {
        "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
        "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the replicas need no Kubernetes API
        "securityContext": {"runAsNonRoot": True, "runAsUser": spec.run_as_user, "fsGroup": spec.run_as_user},
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                "command": replica_command(spec),
                "ports": [{"name": PORT_NAME, "containerPort": PORT}],
                "env": [{"name": key, "value": env[key]} for key in PASSED_ENV[:1] if key in env]
                + (
                    [
                        {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name(job_id), "key": key}}}
                        for key in CREDENTIAL_ENV
                    ]
                    if has_credentials(env)
                    else []
                )
                + [
                    {"name": "HOME", "value": SCRATCH},
                    {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "2"},
                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                ],
                "resources": resources,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": spec.run_as_user,
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": spec.scratch_size}}],
    }
    if spec.image_pull_secret:
        pod["imagePullSecrets"] = [{"name": spec.image_pull_secret}]
    if spec.gpus:
        resources["limits"]["nvidia.com/gpu"] = str(spec.gpus)
        pod["tolerations"] = [dict(GPU_TOLERATION)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": job_name(job_id),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "issue-titles",
                "app.kubernetes.io/component": "training",
                "pachyderm.io/job": job_id,
            },
        },
        "spec": {
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 0},
            "tfReplicaSpecs": {
                "Worker": {"replicas": spec.workers, "restartPolicy": "Never", "template": {"spec": pod}}
            },
        },
    }


class KubeApi:
    """The calls the launcher makes (TFJobs: create, get, delete; Secrets: create, delete), over HTTPS with the pod's
    service-account token (no client library: `requests` is already in the stage image)."""

    def __init__(self, base_url: str, token: str, namespace: str, verify: str | bool = True, session=None) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.http.verify = verify

    @classmethod
    def in_cluster(cls, env: Mapping[str, str] = os.environ, account: Path = SERVICE_ACCOUNT_DIR) -> KubeApi:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        try:
            token = (account / "token").read_text().strip()
            namespace = (account / "namespace").read_text().strip()
        except OSError as error:
            raise TFJobFailed(
                f"no service-account token in {account} ({error.strerror}): the train pipeline must "
                "run under its own service account (podPatch serviceAccountName)"
            ) from None
        host = f"[{host}]" if host and ":" in host else host
        return cls(f"https://{host}:{port}", token, namespace, verify=str(account / "ca.crt"))

    def _url(self, name: str | None = None) -> str:
        url = f"{self.base_url}/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"
        return f"{url}/{name}" if name else url

    def _secrets_url(self, name: str | None = None) -> str:
        url = f"{self.base_url}/api/v1/namespaces/{self.namespace}/secrets"
        return f"{url}/{name}" if name else url

    def _fail(self, response, what: str) -> None:
        try:
            message = response.json().get("message") or response.text
        except ValueError:
            message = response.text
        raise TFJobFailed(f"Kubernetes API refused to {what}: HTTP {response.status_code}: {message[:300]}")

    def _request(self, method: str, url: str, what: str, *, absent: int, json: dict | None = None) -> Any:
        """The response, or None when the API answers `absent` (409: exists already; 404: not there); any other
        error status fails, saying what was refused."""
        response = self.http.request(method, url, json=json, timeout=30)
        if response.status_code == absent:
            return None
        if response.status_code >= 300:
            self._fail(response, what)
        return response

    def create(self, manifest: dict) -> dict | None:
        """The created TFJob, or None when one of that name exists already."""
        what = f"create TFJob {manifest['metadata']['name']}"
        response = self._request("POST", self._url(), what, absent=409, json=manifest)
        return None if response is None else response.json()

    def get(self, name: str) -> dict | None:
        response = self._request("GET", self._url(name), f"get TFJob {name}", absent=404)
        return None if response is None else response.json()

    def delete(self, name: str) -> bool:
        """Delete the TFJob and, through their owner references, its pods and services; False if it was gone."""
        body = {"propagationPolicy": "Background"}
        return self._request("DELETE", self._url(name), f"delete TFJob {name}", absent=404, json=body) is not None

    def create_secret(self, manifest: dict) -> bool:
        """True when created, False when one of that name exists already. The response (which echoes the data) is
        not kept, and no error message carries the manifest."""
        what = f"create Secret {manifest['metadata']['name']}"
        return self._request("POST", self._secrets_url(), what, absent=409, json=manifest) is not None

    def delete_secret(self, name: str) -> bool:
        """False if it was gone already (the garbage collector may have removed it with its TFJob)."""
        return self._request("DELETE", self._secrets_url(name), f"delete Secret {name}", absent=404) is not None


def _conditions(job: Mapping) -> list[dict]:
    return [c for c in ((job.get("status") or {}).get("conditions") or []) if c.get("status") == "True"]


def state(job: Mapping) -> tuple[str, dict | None]:
    """The TFJob's latest true condition (Created, Running, Restarting, Succeeded, Failed), Failed winning."""
    conditions = _conditions(job)
    for kind in ("Failed", "Succeeded"):
        for condition in conditions:
            if condition.get("type") == kind:
                return kind, condition
    return (conditions[-1].get("type", "Pending"), conditions[-1]) if conditions else ("Pending", None)


def describe(job: Mapping) -> str:
    """One log line: the state, its reason, and each replica type's active/succeeded/failed counts."""
    kind, condition = state(job)
    line = f"TFJob {job.get('metadata', {}).get('name')}: {kind}"
    if condition and (condition.get("reason") or condition.get("message")):
        line += f" ({condition.get('reason', '')}: {condition.get('message', '')})"
    replicas = (job.get("status") or {}).get("replicaStatuses") or {}
    for rtype, counts in sorted(replicas.items()):
        counts = counts or {}
        line += (
            f"; {rtype}: {counts.get('active', 0)} active, {counts.get('succeeded', 0)} succeeded, "
            f"{counts.get('failed', 0)} failed"
        )
    return line


def _create_secret(api: KubeApi, secret: dict, log: Callable[[str], None]) -> None:
    """Create the credentials Secret; one of that name left by an earlier try is replaced (no `get` needed)."""
    name = secret["metadata"]["name"]
    if not api.create_secret(secret):
        log(f"Secret {name} exists from an earlier try: replacing it")
        api.delete_secret(name)
        if not api.create_secret(secret):
            raise TFJobFailed(f"Secret {name} exists and could not be replaced")
    owner = secret["metadata"]["ownerReferences"][0]
    log(f"Secret {name} created (S3 credentials of the replicas, owned by TFJob {owner['name']})")


def launch(
    api: KubeApi,
    manifest: dict,
    log: Callable[[str], None] = print,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    secret: Callable[[dict], dict] | None = None,
) -> dict:
    """Create the TFJob (and, from the created TFJob, the credentials Secret that `secret` builds), follow it until it
    ends, delete both; return the finished TFJob or raise TFJobFailed.

    A TFJob of the same name left by an earlier try of this datum (the worker was killed) is deleted first: this try
    trains from the start, as a retried datum does."""
    name = manifest["metadata"]["name"]
    secret_made: str | None = None
    started = clock()
    try:
        created = api.create(manifest)
        while created is None:
            log(f"TFJob {name} exists from an earlier try: deleting it first")
            api.delete(name)
            while api.get(name) is not None:
                sleep(min(poll_seconds, 2.0))
            created = api.create(manifest)
        log(f"TFJob {name} created: {manifest['spec']['tfReplicaSpecs']['Worker']['replicas']} worker(s)")
        if secret is not None:
            body = secret(created)
            secret_made = body["metadata"]["name"]
            _create_secret(api, body, log)
        last = None
        while True:
            job = api.get(name)
            if job is None:
                raise TFJobFailed(f"TFJob {name} was deleted before it finished")
            line = describe(job)
            if line != last:
                log(line)
                last = line
            kind, condition = state(job)
            if kind == "Failed":
                condition = condition or {}
                raise TFJobFailed(
                    f"TFJob {name} failed: {condition.get('reason', 'Failed')}: "
                    f"{condition.get('message', '(no message)')}"
                )
            if kind == "Succeeded":
                return job
            if timeout_seconds is not None and clock() - started > timeout_seconds:
                raise TFJobFailed(f"TFJob {name} did not finish within {timeout_seconds / 60:g} minutes (last: {line})")
            sleep(poll_seconds)
    finally:
        if secret_made:
            try:
                if api.delete_secret(secret_made):
                    log(f"Secret {secret_made} deleted")
            except Exception as error:
                log(
                    f"Secret {secret_made} could not be deleted ({error}); the garbage collector removes it with "
                    f"TFJob {name}"
                )
        try:
            if api.delete(name):
                log(f"TFJob {name} deleted")
        except Exception as error:
            log(f"TFJob {name} could not be deleted: {error}")


def _stop_on_sigterm() -> None:
    """Pachyderm stops a worker with SIGTERM (a killed job): unwind through `launch`'s cleanup, as on Ctrl-C."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_launch(
    spec: ReplicaSpec,
    env: Mapping[str, str] = os.environ,
    local_input: Path | None = None,
    local_output: Path | None = None,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
    api: KubeApi | None = None,
) -> dict:
    """In a cluster: the TFJob for this Pachyderm job. Without one: the same replicas as local processes."""
    if api is None and not env.get("KUBERNETES_SERVICE_HOST"):
        return _run_locally(spec, local_input, local_output)
    job_id = env.get("PACH_JOB_ID")
    if not job_id:
        raise StageError("PACH_JOB_ID is not set: launch-tfjob runs as a Pachyderm pipeline's command")
    missing = [key for key in PASSED_ENV[:1] if not env.get(key)]
    if missing:
        raise StageError(
            f"{', '.join(missing)} is not set: the train pipeline must be S3-enabled (input.pfs.s3: true, s3Out: true)"
        )
    api = api or KubeApi.in_cluster(env)
    _stop_on_sigterm()
    secret = (lambda created: credentials_secret(job_id, api.namespace, env, created)) if has_credentials(env) else None
    job = launch(
        api,
        tfjob_manifest(spec, job_id, api.namespace, env),
        log=lambda line: print(line, flush=True),
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
        secret=secret,
    )
    return {"tfjob": job["metadata"]["name"], "state": state(job)[0], "workers": spec.workers}


def _run_locally(spec: ReplicaSpec, local_input: Path | None, local_output: Path | None) -> dict:
    from issue_titles.distributed import run_local_workers

    if local_input is None or local_output is None:
        raise StageError(
            "no Kubernetes API (KUBERNETES_SERVICE_HOST) and no --local-input/--local-output folders "
            "to train on locally"
        )
    argv = ["train", "--input", str(local_input), "--output", str(local_output), *spec.train_args]
    if spec.workers > 1:
        run_local_workers(argv, spec.workers)
    else:
        import subprocess
        import sys

        code = subprocess.call([sys.executable, "-m", "issue_titles.cli", *argv])
        if code:
            raise TFJobFailed(f"local training exited with code {code}")
    return {"tfjob": "local", "state": "Succeeded", "workers": spec.workers}


def split_train_args(args: Sequence[str]) -> tuple[str, ...]:
    """The train flags after `--` (argparse.REMAINDER keeps the separator)."""
    args = list(args)
    return tuple(args[1:] if args[:1] == ["--"] else args)
