"""The contributor tooling: lint entry point, pre-commit hooks that need no network, licence files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: install the dev lock (`make venv` does)"
    return found


def test_lint_script_and_ci_entry_pass_shellcheck() -> None:
    scripts = [ROOT / "tools" / "lint.sh", ROOT / ".ci" / "run"]
    result = subprocess.run(
        [tool("shellcheck"), "--severity=style", *map(str, scripts)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_script_runs_ruff_check_ruff_format_check_and_mypy() -> None:
    text = (ROOT / "tools" / "lint.sh").read_text(encoding="utf-8")
    for command in ('"$bin/ruff" check .', '"$bin/ruff" format --check .', '"$bin/mypy"'):
        assert f"run {command}" in text


def test_pre_commit_config_is_valid_and_its_hooks_download_nothing() -> None:
    config = ROOT / ".pre-commit-config.yaml"
    result = subprocess.run(
        [tool("pre-commit"), "validate-config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    repos = yaml.safe_load(config.read_text(encoding="utf-8"))["repos"]
    hooks = {hook["id"]: hook for repo in repos for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy"} <= set(hooks)
    assert all(repo["repo"] == "local" for repo in repos)  # no hook repository to clone
    assert all(hook["language"] == "system" and hook["entry"].startswith(".venv/bin/") for hook in hooks.values())


def test_ruff_and_mypy_are_configured_in_the_root_pyproject() -> None:
    tools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert tools["ruff"]["line-length"] == 120 and tools["ruff"]["lint"]["select"]
    assert "stages/src/issue_titles" in tools["mypy"]["files"]


def test_both_projects_ship_the_apache_license_they_declare() -> None:
    for folder in (ROOT, ROOT / "stages"):
        project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        text = (folder / "LICENSE").read_text(encoding="utf-8")
        assert project["license"] == "Apache-2.0"
        assert "Apache License\n                           Version 2.0, January 2004" in text
        assert "END OF TERMS AND CONDITIONS" in text


# --- locks (tools/lock.sh, uv) ---------------------------------------------------------------------------------------
LOCKS = (
    ROOT / "requirements-dev.lock",
    ROOT / "stages" / "requirements.lock",
    ROOT / "stages" / "requirements-gpu.lock",
)


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of every requirement in a `uv pip compile --generate-hashes` file."""
    found: dict[str, tuple[str, int]] = {}
    name = ""
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement = line.split(";")[0].rstrip(" \\")
            assert "==" in requirement, f"{lock.name}: not an exact pin: {line}"
            name, version = requirement.split("==")
            found[name] = (version, 0)
        elif line.strip().startswith("--hash=sha256:"):
            found[name] = (found[name][0], found[name][1] + 1)
    return found


def test_every_lock_pins_exact_versions_with_hashes() -> None:
    for lock in LOCKS:
        locked = pins(lock)
        assert locked, lock
        assert all(hashes for _, hashes in locked.values()), f"{lock.name}: pins without hashes"
        assert not any(name.startswith("issue-titles") for name in locked)  # the local packages: installed editable


def test_the_image_locks_hold_the_versions_the_tests_ran_with() -> None:
    dev = {name: version for name, (version, _) in pins(LOCKS[0]).items()}
    cpu, gpu = pins(LOCKS[1]), pins(LOCKS[2])
    assert {name: version for name, (version, _) in cpu.items() if name in dev} == {
        name: dev[name] for name in cpu if name in dev
    }
    assert set(cpu) <= set(dev)  # the dev lock (what the tests install) is a superset of the image's
    assert "tensorflow-cpu" not in gpu and gpu["tensorflow"][0] == cpu["tensorflow-cpu"][0]
    assert any(name.startswith("nvidia-cudnn") for name in gpu)
    assert {name: version for name, (version, _) in gpu.items() if name in cpu} == {
        name: version for name, (version, _) in cpu.items() if name in gpu
    }


def test_the_image_and_the_makefile_install_from_the_locks_with_hashes() -> None:
    dockerfile = (ROOT / "stages" / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY requirements.lock requirements-gpu.lock ./" in dockerfile
    assert 'pip install --require-hashes --no-deps -r "${lock}"' in dockerfile
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "pip install --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install --no-deps -e ./stages" in makefile and "pip install --no-deps -e ." in makefile


def test_the_real_client_venv_installs_from_a_hash_lock_with_seldons_own_pins() -> None:
    """tests/serving/client_envs.py builds seldon-core's client venv from this lock (`make test`, before the tests)."""
    locked = pins(ROOT / "requirements-seldon-client.lock")
    assert locked["seldon-core"][0] == "1.17.1"
    assert all(hashes for _, hashes in locked.values()), "requirements-seldon-client.lock: pins without hashes"
    assert int(locked["numpy"][0].split(".")[0]) < 2 and int(locked["protobuf"][0].split(".")[0]) < 4
    assert "python -m tests.serving.client_envs" in (ROOT / "Makefile").read_text(encoding="utf-8")
