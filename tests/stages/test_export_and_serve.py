"""export on a real bundle outside a cluster (the registry push: test_export_registry.py); serve delegates."""

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from issue_titles.errors import StageError
from issue_titles.export import run_export, split_reference
from tests.stages.conftest import run_stages

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
    assert record["reason"] == "not inside a Kubernetes cluster (KUBERNETES_SERVICE_HOST is unset): nothing was pushed"
    assert record["digest"] is None
    assert record["context"] == str(chain["build"].absolute())
    assert record["layer"]["digest"].startswith("sha256:") and record["layer"]["diff_id"].startswith("sha256:")
    assert "nothing was pushed" in capsys.readouterr().err


def test_the_serving_image_contract_is_the_bundles_dockerfile(chain):
    from issue_titles import export

    dockerfile = (chain["build"] / "Dockerfile").read_text()
    assert f"USER {export.SERVING_UID}:{export.SERVING_UID}" in dockerfile
    assert "ENTRYPOINT " + json.dumps(export.ENTRYPOINT) in dockerfile
    assert "CMD " + json.dumps(export.SERVE_CMD) in dockerfile


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
        "stages export: error: --image 'Not Valid' is not a valid image reference "
        "(expected REPO or REPO:TAG, lower-case)"
    )


def test_serve_delegates_to_the_serving_part(monkeypatch, tiny):
    calls = []
    fake = types.ModuleType("issue_titles.serving.server")
    vars(fake)["serve"] = lambda model_dir, host, port, **options: calls.append((Path(model_dir), host, port, options))
    monkeypatch.setitem(sys.modules, "issue_titles.serving.server", fake)
    assert run_stages("serve", "--model", tiny, "--host", "0.0.0.0", "--port", "9100", "--metrics-port", "8082") == 0
    assert calls == [(tiny, "0.0.0.0", 9100, {"metrics_port": 8082, "tracing_server": None, "log_format": None,
                                              "access_log": True})]  # fmt: skip
