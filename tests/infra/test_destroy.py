"""`pulumi destroy` removes everything: every object the program makes is a resource the stack owns."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.infra.harness import ROOT, ProgramRun

OUT_OF_BAND = {"subprocess", "os.system", "kubectl", "pachctl", "pulumi_command"}


def test_no_created_resource_is_protected_or_retained_on_delete(serving_program: ProgramRun) -> None:
    created = [r for r in serving_program if not r.read]
    assert created
    survivors = [r.name for r in created if r.protect or r.retain_on_delete]
    assert survivors == [], "these would survive `pulumi destroy`"


def test_the_only_objects_read_rather_than_created_are_load_balancer_services(serving_program: ProgramRun) -> None:
    """Reads are lookups of what a Helm release made; the release owns them and deletes them."""
    reads = [r for r in serving_program if r.read]
    assert all(r.type_ == "kubernetes:core/v1:Service" for r in reads)
    assert (len(reads) > 0) == (serving_program.stack == "gke-gpu")


def test_namespaces_are_stack_resources_not_helm_side_effects(serving_program: ProgramRun) -> None:
    releases = serving_program.of_type("kubernetes:helm.sh/v3:Release")
    assert releases and not [r for r in releases if r.inputs.get("createNamespace")]
    namespaces = {m["metadata"]["name"] for m in serving_program.manifests() if m["kind"] == "Namespace"}
    assert {r.inputs["namespace"] for r in releases} <= namespaces


def test_pachyderm_repos_and_pipelines_are_stack_resources(program: ProgramRun) -> None:
    """The Pachyderm provider deletes them on destroy (its delete is tested in test_pachyderm_provider.py)."""
    dynamic = program.of_type("pulumi-python:dynamic:Resource")
    assert sorted(r.name for r in dynamic) == sorted(
        f"pipelines-{n}" for n in ("raw_data", "split", "vocabulary", "pre_process", "train", "build", "export")
    )
    assert all(not r.read and not r.retain_on_delete for r in dynamic)


def test_the_program_makes_no_out_of_band_calls() -> None:
    """No kubectl, pachctl or shell from the program: what it does not declare, destroy could not undo."""
    sources = [ROOT / "__main__.py", *sorted((ROOT / "infra").glob("*.py"))]
    for source in sources:
        tree = ast.parse(Path(source).read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & OUT_OF_BAND, f"{source.name} imports {imported & OUT_OF_BAND}"
