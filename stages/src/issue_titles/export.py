"""`stages export`: build and push the serving image from a bundle with kaniko, tagged with the job ID.

Inside a cluster (KUBERNETES_SERVICE_HOST set and the kaniko executor present) it pushes
`<repo>:<PACH_JOB_ID>`; the registry credentials are whatever docker config kaniko finds (the pipeline mounts
the registry secret and sets REGISTRY_AUTH_FILE to its `.dockerconfigjson`, which is handed to kaniko as
`$DOCKER_CONFIG/config.json`, the only name kaniko reads). Anywhere else it says that it cannot push and records the
reference and the build context it would have used, so the local mode still ends with a traceable image.json.
"""

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from issue_titles.atomic import atomic_output_dir
from issue_titles.errors import StageError
from issue_titles.jsonio import write_json
from issue_titles.provenance import PROVENANCE, sha256_file, verify_bundle

KANIKO_EXECUTOR = Path("/kaniko/executor")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def split_reference(image: str) -> tuple[str, str | None]:
    """'host:5000/team/app:tag' -> ('host:5000/team/app', 'tag'); a registry port is not a tag."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
    else:
        repository, tag = image, None
    if "@" in image or not _REPOSITORY.match(repository) or (tag is not None and not _TAG.match(tag)):
        raise StageError(f"--image '{image}' is not a valid image reference (expected REPO or REPO:TAG, lower-case)")
    return repository, tag


def image_reference(image: str, bundle: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """(reference, where the tag came from): an explicit tag, else PACH_JOB_ID, else the bundle's digest."""
    repository, tag = split_reference(image)
    if tag:
        return f"{repository}:{tag}", "--image"
    if env.get("PACH_JOB_ID"):
        return f"{repository}:{env['PACH_JOB_ID']}", "PACH_JOB_ID"
    return f"{repository}:bundle-{sha256_file(bundle / PROVENANCE)[:12]}", "provenance.json sha256 (no PACH_JOB_ID)"


def kaniko_env(env: Mapping[str, str], scratch: Path) -> dict[str, str]:
    """The executor's environment: DOCKER_CONFIG holds the mounted registry secret as config.json."""
    child = dict(env)
    auth_file = env.get("REGISTRY_AUTH_FILE")
    if auth_file:
        source = Path(auth_file)
        if not source.is_file():
            raise StageError("REGISTRY_AUTH_FILE does not point at a file (is the registry secret mounted?)", path=source)
        docker_dir = scratch / "docker"
        docker_dir.mkdir(mode=0o700)
        (docker_dir / "config.json").write_bytes(source.read_bytes())
        child["DOCKER_CONFIG"] = str(docker_dir)
    return child


def run_export(
    input_dir: Path,
    output_dir: Path,
    image: str,
    env: Mapping[str, str] | None = None,
    executor: Path = KANIKO_EXECUTOR,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> dict:
    env = os.environ if env is None else env
    bundle = Path(input_dir).absolute()
    for name in ("Dockerfile", PROVENANCE):
        if not (bundle / name).is_file():
            raise StageError(f"{name} not found (expected the output of `stages build`)", path=bundle / name)
    verify_bundle(bundle)  # never ship a bundle that changed after it was built
    reference, tag_source = image_reference(image, bundle, env)
    command = [
        str(executor),
        f"--context=dir://{bundle}",
        f"--dockerfile={bundle / 'Dockerfile'}",
        f"--destination={reference}",
    ]
    record = {
        "image": reference,
        "pushed": False,
        "reason": None,
        "digest": None,
        "tag_source": tag_source,
        "job_id": env.get("PACH_JOB_ID"),
        "context": str(bundle),
        "dockerfile": "Dockerfile",
        "provenance_sha256": sha256_file(bundle / PROVENANCE),
        "executor_command": command,
    }
    in_cluster = bool(env.get("KUBERNETES_SERVICE_HOST"))
    has_executor = executor.is_file() and os.access(executor, os.X_OK)
    if in_cluster and has_executor:
        with tempfile.TemporaryDirectory() as scratch:
            digest_file = Path(scratch) / "digest"
            result = run([*command, f"--digest-file={digest_file}"], check=False, env=kaniko_env(env, Path(scratch)))
            if result.returncode != 0:
                raise StageError(f"kaniko could not build or push {reference} (exit code {result.returncode})")
            digest = digest_file.read_text().strip() if digest_file.is_file() else None
        record |= {"pushed": True, "digest": digest or None}
        print(f"pushed {reference}" + (f" ({digest})" if digest else ""), file=sys.stderr)
    else:
        missing = "not inside a Kubernetes cluster (KUBERNETES_SERVICE_HOST is unset)" if not in_cluster else (
            f"the kaniko executor is not at {executor}"
        )
        record["reason"] = f"{missing}: cannot build or push the image"
        print(
            f"stages export: {record['reason']}. Recorded {reference} and its build context {bundle} in image.json; "
            f"to build it by hand: docker build -t {reference} {bundle}",
            file=sys.stderr,
        )
    with atomic_output_dir(output_dir, step="export", inputs=[input_dir]) as staging:
        write_json(staging / "image.json", record)
    return record
