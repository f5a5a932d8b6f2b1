"""Serving the latest build locally: check out build@master and start `stages serve` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from localpach.errors import LocalPachError, NotFound
from localpach.fsutil import make_tree_read_only, remove_tree
from localpach.pfs import PFS, Commit
from localpach.procs import stop_process_group

BUILD_REPO = "build"
MODEL_NAME = "issue-summarization"

# The tutorial's request (step 8), unchanged: one issue body in Seldon's v1 `ndarray` format.
TUTORIAL_BODY = (
    "issue overview add a new property to disable detection of image stream files those ended with -is.yml from "
    "target directory. expected behaviour by default cube should ot process image stream files if user does not set "
    "it. current behaviour cube always try to execute -is.yml files which can cause some problems in most of cases, "
    "for example if you are using kuberentes instead of openshift or if you use together fabric8 maven plugin with "
    "cube"
)
TUTORIAL_PAYLOAD = {"data": {"ndarray": [[TUTORIAL_BODY]]}}

HOW_TO_BUILD = (
    "no built model yet: build@master has no commits. Build one with\n"
    "  localpach put-file raw_data github_pr_issues_large.csv.gz -f data/github_pr_issues_large.csv.gz\n"
    "  localpach run\n"
    "or run the whole tutorial with `localpach demo` (or `make demo`)."
)


def latest_build(pfs: PFS) -> Commit:
    """The newest successful build output (the build repo's master head)."""
    if not pfs.exists() or pfs.find_repo(BUILD_REPO) is None:
        raise NotFound(HOW_TO_BUILD)
    head = pfs.head_commit(BUILD_REPO)
    if head is None:
        raise NotFound(HOW_TO_BUILD)
    return head


def checkout(pfs: PFS, commit: Commit) -> Path:
    """A read-only copy of `commit` under `<state>/serving/<commit id>`, made once and atomically."""
    target = pfs.state_dir / "serving" / commit.id
    if target.is_dir():
        return target
    scratch = target.with_name(f".{commit.id}.partial-{os.getpid()}")
    remove_tree(scratch)
    pfs.materialize(commit.files, scratch)
    make_tree_read_only(scratch)
    os.replace(scratch, target)
    return target


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def stages_executable() -> str:
    candidate = Path(sys.executable).parent / "stages"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("stages")
    if found is None:
        raise LocalPachError(
            "the `stages` command is not installed in this environment; install it with "
            "`pip install -e ./stages[serve]` (or run `make demo`, which installs everything)"
        )
    return found


def server_command(bundle: Path, host: str, port: int) -> list[str]:
    return [stages_executable(), "serve", "--model", str(bundle), "--host", host, "--port", str(port)]


def start_server(bundle: Path, host: str, port: int, log: IO[bytes] | None = None) -> subprocess.Popen:
    """Start `stages serve` in its own process group (so stopping it stops any workers it spawned)."""
    return subprocess.Popen(
        server_command(bundle, host, port),
        stdout=log if log is not None else None,
        stderr=subprocess.STDOUT if log is not None else None,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 180.0) -> float:
    """Poll the readiness route until the model answers; returns the seconds it took."""
    import requests

    started = time.time()
    while time.time() - started < timeout:
        if process.poll() is not None:
            raise LocalPachError(f"the model server exited with code {process.returncode} before it was ready")
        try:
            if requests.get(f"{base_url}/v2/health/ready", timeout=2).status_code == 200:
                return time.time() - started
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise LocalPachError(f"the model server was not ready after {timeout:.0f}s ({base_url}/v2/health/ready)")


def stop_server(process: subprocess.Popen, timeout: float = 20.0) -> None:
    if process.poll() is None:
        stop_process_group(process, timeout)


def predict_v1(base_url: str, payload: dict, timeout: float = 60.0, path: str = "/api/v0.1/predictions") -> dict:
    """Send a Seldon v1 request as the tutorial's curl did; returns the decoded JSON answer."""
    import requests

    response = requests.post(f"{base_url}{path}", json=payload, timeout=timeout)
    if response.status_code != 200:
        raise LocalPachError(f"the model server answered {response.status_code}: {response.text[:300]}")
    return response.json()


def curl_command(base_url: str) -> str:
    import json

    body = json.dumps(TUTORIAL_PAYLOAD)
    return f"curl -X POST -H 'Content-Type: application/json' -d '{body}' {base_url}/api/v0.1/predictions"
