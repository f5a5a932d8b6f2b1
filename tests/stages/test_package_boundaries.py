"""The model package stands alone: it never imports the Pulumi program, the pipeline definitions or localpach
(DEVELOPERS.md, "Boundaries"), so the stage image needs nothing but `stages/`."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stages" / "src" / "issue_titles"
FORBIDDEN = ("pulumi", "pulumi_kubernetes", "pulumi_docker", "pipelines", "infra", "localpach", "policy")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_stages_package_imports_no_pulumi_pipelines_or_localpach():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert any(path.name == "registry.py" for path in modules)  # the export's registry client is among them
    offenders = {
        path.relative_to(PACKAGE).as_posix(): sorted(imported_roots(path) & set(FORBIDDEN)) for path in modules
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else f"issue_titles.{node.module}"  # the package's own relatives
            modules |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return modules


def test_the_reference_decoders_stay_off_the_serving_path():
    """The per-token loops are the tests' oracle: no product module imports them, so no server ever runs them."""
    importers = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "reference_decoding.py"
        and any(name.endswith("reference_decoding") for name in imported_modules(path))
    ]
    assert (PACKAGE / "reference_decoding.py").is_file()
    assert importers == []
