"""export: pushes with kaniko inside a cluster (a fake executor here), explains itself outside; serve delegates."""

import json
import shutil
import stat
import sys
import types
from pathlib import Path

import pytest
from tests.stages.conftest import run_stages

from issue_titles.errors import StageError
from issue_titles.export import run_export, split_reference

JOB = "0123456789abcdef0123456789abcdef"


def test_outside_a_cluster_export_records_reference_and_context(chain, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("PACH_JOB_ID", JOB)
    code = run_stages("export", "--input", chain["build"], "--output", tmp_path / "out",
                      "--image", "registry.example.com/issue-titles/serving")  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "out" / "image.json").read_text())
    assert record["image"] == f"registry.example.com/issue-titles/serving:{JOB}"
    assert record["pushed"] is False
    assert record["reason"] == "not inside a Kubernetes cluster (KUBERNETES_SERVICE_HOST is unset): cannot build or push the image"
    assert record["context"] == str(chain["build"].absolute())
    assert "cannot build or push the image" in capsys.readouterr().err


def test_inside_a_cluster_export_runs_kaniko_with_the_job_tag(chain, tmp_path):
    executor = tmp_path / "executor"
    executor.write_text("#!/bin/sh\nfor a in \"$@\"; do case $a in --digest-file=*) echo sha256:feed > ${a#*=};; esac; done\n")
    executor.chmod(executor.stat().st_mode | stat.S_IEXEC)
    calls = []

    def run(command, check, env=None):
        import subprocess

        calls.append(command)
        return subprocess.run(command, check=check, env=env)

    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PACH_JOB_ID": JOB}
    record = run_export(chain["build"], tmp_path / "out", "registry.example.com/app", env=env, executor=executor, run=run)
    assert record["pushed"] is True and record["digest"] == "sha256:feed"
    assert f"--destination=registry.example.com/app:{JOB}" in calls[0]
    assert f"--context=dir://{chain['build'].absolute()}" in calls[0]
    assert json.loads((tmp_path / "out" / "image.json").read_text())["image"] == f"registry.example.com/app:{JOB}"


def test_the_mounted_registry_secret_reaches_kaniko_as_docker_config(chain, tmp_path):
    executor = tmp_path / "executor"
    executor.write_text('#!/bin/sh\ncp "$DOCKER_CONFIG/config.json" "$SEEN"\n')
    executor.chmod(0o755)
    secret = tmp_path / "secret" / ".dockerconfigjson"
    secret.parent.mkdir()
    secret.write_text('{"auths": {"registry.example.com": {"auth": "dTpw"}}}')
    seen = tmp_path / "seen.json"
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PACH_JOB_ID": JOB, "REGISTRY_AUTH_FILE": str(secret), "SEEN": str(seen),
           "PATH": "/usr/bin:/bin"}
    run_export(chain["build"], tmp_path / "out", "registry.example.com/app", env=env, executor=executor)
    assert seen.read_text() == secret.read_text()


def test_a_failed_push_fails_the_step_and_writes_nothing(chain, tmp_path):
    executor = tmp_path / "executor"
    executor.write_text("#!/bin/sh\nexit 1\n")
    executor.chmod(0o755)
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PACH_JOB_ID": JOB}
    with pytest.raises(StageError, match=f"kaniko could not build or push registry.example.com/app:{JOB} \\(exit code 1\\)"):
        run_export(chain["build"], tmp_path / "out", "registry.example.com/app", env=env, executor=executor)
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_changed_bundle(chain, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(chain["build"], bundle)
    (bundle / "Dockerfile").write_text("FROM evil\n")
    with pytest.raises(StageError, match="Dockerfile: checksum mismatch"):
        run_export(bundle, tmp_path / "out", "registry.example.com/app", env={})


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("localhost:5000/team/app", ("localhost:5000/team/app", None)),
        ("localhost:5000/team/app:v1", ("localhost:5000/team/app", "v1")),
        ("app", ("app", None)),
    ],
)
def test_image_references_split_at_the_tag_not_the_port(image, expected):
    assert split_reference(image) == expected


def test_invalid_image_reference_is_refused(chain, tmp_path, capsys):
    code = run_stages("export", "--input", chain["build"], "--output", tmp_path / "out", "--image", "Not Valid")
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "stages export: error: --image 'Not Valid' is not a valid image reference (expected REPO or REPO:TAG, lower-case)"
    )


def test_serve_delegates_to_the_serving_part(monkeypatch, tiny):
    calls = []
    fake = types.ModuleType("issue_titles.serving.server")
    fake.serve = lambda model_dir, host, port: calls.append((Path(model_dir), host, port))
    monkeypatch.setitem(sys.modules, "issue_titles.serving.server", fake)
    assert run_stages("serve", "--model", tiny, "--host", "0.0.0.0", "--port", "9100") == 0
    assert calls == [(tiny, "0.0.0.0", 9100)]
