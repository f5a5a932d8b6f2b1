"""A full local run with a registry password configured never writes the password anywhere a person could read.

The password is configured every way a deployment hands it over: the Pulumi config (`PULUMI_CONFIG`), a
docker config (`DOCKER_CONFIG/config.json`), the file `REGISTRY_AUTH_FILE` names (what the export pipeline
mounts) and a plain variable. The run is the real `localpach` CLI with the project's specs and the real stages
on tiny settings; every byte it prints and every file it leaves in its state (job logs, job records, commits,
stored outputs such as provenance.json and image.json) is searched, raw and base64-encoded.
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local.conftest import PROJECT_ROOT
from tests.local.test_local_end_to_end import tiny_csv

PASSWORD = "s3cr3t-Registry-Pa55word-7f1c"
USER = "ci-robot"
STAGES = Path(sys.executable).parent / "stages"
pytestmark = pytest.mark.skipif(not STAGES.is_file(), reason="the stages package is not installed")


def docker_config(user: str, password: str) -> dict:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {"registry.example.com": {"username": user, "password": password, "auth": auth}}}


def localpach(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "localpach", *args], capture_output=True, env=env, cwd=PROJECT_ROOT, timeout=300
    )


def test_a_full_local_run_never_prints_or_stores_the_registry_password(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "config.json").write_text(json.dumps(docker_config(USER, PASSWORD)))
    env = {
        **os.environ,
        "PULUMI_CONFIG": json.dumps({"registry:password": PASSWORD, "registry:username": USER}),
        "DOCKER_CONFIG": str(secrets_dir),
        "REGISTRY_AUTH_FILE": str(secrets_dir / "config.json"),
        "REGISTRY_PASSWORD": PASSWORD,
    }
    state = tmp_path / "state"
    state_args = ("--state", str(state))
    raw = tiny_csv(tmp_path / "issues.csv", rows=400)

    results = [
        localpach(*state_args, "put-file", "raw_data", "issues.csv", "-f", str(raw), env=env),
        localpach(
            *state_args,
            "run",
            "--sample-size",
            "300",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--allow-below-baseline",
            env=env,
        ),  # a 1-epoch model is not meant to win: lift build's gate
        localpach(*state_args, "list-job", env=env),
        localpach(*state_args, "inspect-commit", "export@master", env=env),
    ]

    assert [result.returncode for result in results] == [0, 0, 0, 0], results[1].stdout[-3000:]
    assert b"export" in results[2].stdout  # every pipeline ran, the export step (which gets the secret) included
    forms = [PASSWORD.encode(), base64.b64encode(f"{USER}:{PASSWORD}".encode()), base64.b64encode(PASSWORD.encode())]
    printed = b"".join(result.stdout + result.stderr for result in results)
    files = [path for path in state.rglob("*") if path.is_file()]
    assert len(files) > 20  # logs, job records, commits and stored outputs were all searched
    for form in forms:
        assert form not in printed, f"the password appears in the CLI output as {form!r}"
        for path in files:
            assert form not in path.read_bytes(), f"the password appears in {path.relative_to(state)}"
