"""Serving a build locally: the newest build that passed the gate and verifies (or a pinned commit), checked out and
served by `stages serve` on 127.0.0.1 — the local mirror of the cluster's `serving:modelTag latest` / `<job ID>`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from localpach.errors import LocalPachError, NotFound
from localpach.fsutil import make_tree_read_only, remove_tree
from localpach.pfs import PFS, Commit
from localpach.procs import stop_process_group
from pipelines.contract import PROVENANCE

BUILD_REPO = "build"

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


def _provenance(pfs: PFS, commit: Commit) -> dict:
    import json

    if PROVENANCE not in commit.files:
        raise LocalPachError(
            f"build@{commit.id}: refusing to serve it: it has no {PROVENANCE} (not the output of `stages build`)"
        )
    try:
        record = json.loads(pfs.objects.read_bytes(commit.files[PROVENANCE].hash))
    except (OSError, ValueError) as error:
        raise LocalPachError(f"build@{commit.id}: refusing to serve it: {PROVENANCE} is unreadable ({error})") from None
    return record if isinstance(record, dict) else {}


def check_servable(pfs: PFS, commit: Commit) -> dict:
    """The build's provenance when it may be served; a LocalPachError naming `build@<id>` when not.

    Served only when the quality gate passed and every file provenance.json lists is in the commit with that
    sha256 (the store addresses objects by sha256, so this needs no reading of the model files).
    """
    record = _provenance(pfs, commit)
    gate = record.get("quality_gate")
    if not isinstance(gate, dict) or gate.get("passed") is not True:
        raise LocalPachError(
            f"build@{commit.id}: refusing to serve it: the model did not pass the quality gate "
            f"({PROVENANCE}: quality_gate={gate!r})"
        )
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        raise LocalPachError(f"build@{commit.id}: refusing to serve it: {PROVENANCE} lists no file checksums")
    for name, expected in sorted(files.items()):
        stored = commit.files.get(name)
        if stored is None or stored.hash != expected:
            why = "is missing" if stored is None else "does not match its recorded sha256"
            raise LocalPachError(f"build@{commit.id}: refusing to serve it: provenance does not verify: {name} {why}")
    return record


def latest_build(pfs: PFS, on_refused: Callable[[str], None] | None = None) -> Commit:
    """The newest build output that may be served (see check_servable), newest first along build@master."""
    if not pfs.exists() or pfs.find_repo(BUILD_REPO) is None or pfs.head_commit(BUILD_REPO) is None:
        raise NotFound(HOW_TO_BUILD)
    refused: list[str] = []
    for commit in pfs.history(BUILD_REPO):
        try:
            check_servable(pfs, commit)
            return commit
        except LocalPachError as refusal:
            refused.append(str(refusal))
            if on_refused is not None:
                on_refused(str(refusal))
    raise NotFound("no build commit can be served:\n  " + "\n  ".join(refused))


def model_summary(pfs: PFS, commit: Commit, data_repo: str = "raw_data") -> dict:
    """Which model this is and where it came from: build commit, job, data commit, ROUGE-L against the baseline."""
    record = _provenance(pfs, commit)
    recorded = record.get("metrics")
    metrics: dict[str, Any] = recorded if isinstance(recorded, dict) else {}

    def rouge(system: str) -> float | None:
        value = (metrics.get(system) or {}).get("rouge_l") if isinstance(metrics.get(system), dict) else None
        return float(value) if isinstance(value, (int, float)) else None

    return {
        "build_commit": commit.id,
        "job": commit.job,
        "data_commit": commit.provenance_map().get(data_repo),
        "rouge_l": rouge("model"),
        "baseline_rouge_l": rouge("lead_baseline"),
        "gate_passed": (record.get("quality_gate") or {}).get("passed") is True,
    }


def describe(summary: dict, data_repo: str = "raw_data") -> str:
    """One line: `build@<id> (job <id>) from raw_data@<id>, ROUGE-L 0.3100 vs baseline 0.2200`."""
    text = f"build@{summary['build_commit']} (job {summary['job']})"
    if summary.get("data_commit"):
        text += f" from {data_repo}@{summary['data_commit']}"
    if summary.get("rouge_l") is not None:
        text += f", ROUGE-L {summary['rouge_l']:.4f}"
        if summary.get("baseline_rouge_l") is not None:
            text += f" vs baseline {summary['baseline_rouge_l']:.4f}"
    return text


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
