"""A full local run with a registry password configured never writes the password anywhere a person could read.

The password is configured every way a deployment hands it over: the Pulumi config (`PULUMI_CONFIG`), a
docker config (`DOCKER_CONFIG/config.json`), the file `REGISTRY_AUTH_FILE` names (what the export pipeline
mounts) and a plain variable. The run is the real `localpach` CLI with the project's specs and the real stages
on tiny settings; every byte it prints and every file it leaves in its state (job logs, job records, commits,
stored outputs such as provenance.json and image.json) is searched, raw and base64-encoded. The run is the
session's one real local run (`real_local_run` in tests/conftest.py, made by `tests.real_local_run`), which the
end-to-end test serves.
"""

import base64
import sys
from pathlib import Path

import pytest

from tests.real_local_run import PASSWORD, USER, LocalRun

STAGES = Path(sys.executable).parent / "stages"
pytestmark = pytest.mark.skipif(not STAGES.is_file(), reason="the stages package is not installed")


def test_a_full_local_run_never_prints_or_stores_the_registry_password(real_local_run: LocalRun) -> None:
    steps = real_local_run.steps
    state = real_local_run.state

    assert [step.args[0] for step in steps] == ["put-file", "run", "list-job", "inspect-commit"]
    assert [step.returncode for step in steps] == [0, 0, 0, 0], steps[1].stdout[-3000:]
    assert b"export" in steps[2].stdout  # every pipeline ran, the export step (which gets the secret) included
    forms = [PASSWORD.encode(), base64.b64encode(f"{USER}:{PASSWORD}".encode()), base64.b64encode(PASSWORD.encode())]
    printed = b"".join(step.stdout + step.stderr for step in steps)
    files = [path for path in state.rglob("*") if path.is_file()]
    assert len(files) > 20  # logs, job records, commits and stored outputs were all searched
    for form in forms:
        assert form not in printed, f"the password appears in the CLI output as {form!r}"
        for path in files:
            assert form not in path.read_bytes(), f"the password appears in {path.relative_to(state)}"
