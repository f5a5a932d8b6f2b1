"""A step's own previous output, for the steps that update rather than recompute (vocabulary, train, build).

Pachyderm pipelines may not form cycles, so a step cannot list its own output repo as an input. What a worker may do
is talk to pachd: Pachyderm 2.12 gives the user code PACH_OUTPUT_COMMIT_ID (the job's open output commit),
PPS_PIPELINE_NAME, PPS_PROJECT_NAME and, with auth on, the pipeline's own PACH_TOKEN (src/server/worker/driver/
driver.go, UserCodeEnv; src/server/pps/server/worker_rc.go), and Kubernetes gives every pod in the namespace
PACHD_PEER_SERVICE_HOST/PORT (the SDK's in-cluster address, src/internal/client/client.go NewInCluster). The output
commit's parent on the pipeline's branch is the previous job's output; one that finished with an error is passed
over. So the step reads `<project>/<pipeline>@<parent>` from pachd with the pipeline's token, read-only.

The spec asks for this by setting transform.env ISSUE_TITLES_PREVIOUS_OUTPUT=parent-commit, and may limit what is
read to some paths of the commit with ISSUE_TITLES_PREVIOUS_FILES (comma-separated; build names provenance.json, not
the weights). localpach honours the same request: it materialises the same commit (the pipeline's output head before
the job, i.e. the new commit's parent), or the named files of it, read-only and names it in LOCALPACH_PREVIOUS_OUTPUT;
no step code differs between the two.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from issue_titles.contract import (
    LOCAL_PREVIOUS_OUTPUT_ENV,
    PREVIOUS_FILES_ENV,
    PREVIOUS_OUTPUT_ENV,
    PREVIOUS_OUTPUT_REQUEST,
)
from issue_titles.errors import StageError

MAX_PARENTS = 50


def previous_output(target: Path, env: Mapping[str, str] | None = None) -> tuple[Path | None, str | None]:
    """(folder holding the previous output, its commit id), or (None, None) when there is none.

    `target` receives the files when they come from pachd: those the spec names in PREVIOUS_FILES_ENV (build's names
    a bundle's provenance.json, not its weights), else all. Outside a pipeline (no request in the environment) there
    is none: a step run by hand starts afresh unless given --previous DIR.
    """
    env = os.environ if env is None else env
    if env.get(PREVIOUS_OUTPUT_ENV) != PREVIOUS_OUTPUT_REQUEST:
        return None, None
    if LOCAL_PREVIOUS_OUTPUT_ENV in env:  # localpach has materialised the commit, or only the named files of it
        local = env[LOCAL_PREVIOUS_OUTPUT_ENV]
        return (Path(local), env.get(LOCAL_PREVIOUS_OUTPUT_ENV + "_COMMIT")) if local else (None, None)
    named = env.get(PREVIOUS_FILES_ENV)
    only = None if named is None else {path.strip().strip("/") for path in named.split(",") if path.strip()}
    return _from_pachd(target, env, only)


def _from_pachd(target: Path, env: Mapping[str, str], only: set[str] | None) -> tuple[Path | None, str | None]:
    commit_id, pipeline = env.get("PACH_OUTPUT_COMMIT_ID"), env.get("PPS_PIPELINE_NAME")
    host = env.get("PACHD_PEER_SERVICE_HOST") or env.get("PACHD_SERVICE_HOST")
    port = env.get("PACHD_PEER_SERVICE_PORT") or env.get("PACHD_SERVICE_PORT")
    if not (commit_id and pipeline and host and port):
        raise StageError(
            f"{PREVIOUS_OUTPUT_ENV}={PREVIOUS_OUTPUT_REQUEST} but this is not a Pachyderm worker "
            "(PACH_OUTPUT_COMMIT_ID, PPS_PIPELINE_NAME and PACHD_PEER_SERVICE_HOST/PORT are needed)"
        )
    try:
        from pachyderm_sdk import Client
        from pachyderm_sdk.api import pfs
    except ImportError as error:
        raise StageError(f"reading the previous output needs pachyderm-sdk ({error})") from None
    client = Client(host=host, port=int(port), auth_token=env.get("PACH_TOKEN") or None)
    project = env.get("PPS_PROJECT_NAME") or "default"
    repo = pfs.Repo(name=pipeline, type="user", project=pfs.Project(name=project))
    info = client.pfs.inspect_commit(commit=pfs.Commit(id=commit_id, repo=repo))
    parent = info.parent_commit
    for _ in range(MAX_PARENTS):
        if parent is None or not parent.id:
            return None, None
        parent_info = client.pfs.inspect_commit(commit=parent, wait=pfs.CommitState.FINISHED)
        if not parent_info.error:
            break
        parent = parent_info.parent_commit
    else:
        return None, None
    target.mkdir(parents=True, exist_ok=True)
    for file_info in client.pfs.walk_file(file=pfs.File(commit=parent, path="/")):
        path = file_info.file.path.lstrip("/")
        if file_info.file_type != pfs.FileType.FILE or (only is not None and path not in only):
            continue
        destination = target / path
        destination.parent.mkdir(parents=True, exist_ok=True)
        with client.pfs.pfs_file(file=file_info.file) as source, open(destination, "wb") as sink:
            sink.write(source.read())
    return target, parent.id
