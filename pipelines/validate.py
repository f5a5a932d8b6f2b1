"""Structural checks of a spec that need no schema file, so the Pulumi program can run them on any machine."""

from __future__ import annotations

from typing import Any

from pipelines.specs import RAW_DATA_REPO


class SpecError(ValueError):
    """A pipeline spec that Pachyderm would refuse; the message names the pipeline and the field."""


def _input_repos(input_: Any, where: str) -> list[str]:
    if not isinstance(input_, dict) or len(input_) != 1:
        raise SpecError(f"{where}: an input has exactly one of pfs, cross, union")
    (kind, value), = input_.items()
    if kind == "pfs":
        if not value.get("repo") or not value.get("glob"):
            raise SpecError(f"{where}.pfs: repo and glob are required")
        return [value["repo"]]
    if kind in ("cross", "union"):
        if not isinstance(value, list) or not value:
            raise SpecError(f"{where}.{kind}: a non-empty list of inputs is required")
        return [repo for i, sub in enumerate(value) for repo in _input_repos(sub, f"{where}.{kind}[{i}]")]
    raise SpecError(f"{where}: unsupported input kind {kind!r}")


def validate_specs(specs: list[dict[str, Any]]) -> None:
    """Each spec is well formed and reads only raw_data or a pipeline declared before it."""
    known = {RAW_DATA_REPO}
    for spec in specs:
        name = (spec.get("pipeline") or {}).get("name")
        if not name:
            raise SpecError("pipeline.name is required")
        transform = spec.get("transform") or {}
        if not transform.get("image"):
            raise SpecError(f"pipeline {name}: transform.image is required")
        cmd = transform.get("cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
            raise SpecError(f"pipeline {name}: transform.cmd must be a non-empty list of strings")
        for repo in _input_repos(spec.get("input"), f"pipeline {name}: input"):
            if repo not in known:
                raise SpecError(f"pipeline {name}: input repo {repo!r} is neither raw_data nor an earlier pipeline")
        known.add(name)
