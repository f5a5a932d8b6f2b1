"""Small Pachyderm specs with the project's DAG shape, whose steps are the fast fake stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from localpach.pfs import PFS, Commit

FAKE_STAGE = Path(__file__).with_name("fake_stage.py")
PIPELINES = ("split", "pre_process", "train", "build", "export")


def head_commit(pfs: PFS, repo: str) -> Commit:
    """The head commit of repo@master, which the test made: no head here is a broken test, not a finding."""
    commit = pfs.head_commit(repo)
    assert commit is not None, f"{repo}@master has no commit"
    return commit


def pfs(repo: str, glob: str = "/", name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"repo": repo, "glob": glob}
    if name:
        spec["name"] = name
    return {"pfs": spec}


def spec(
    name: str, input_: dict[str, Any], inputs: list[str], transform_env: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    cmd = [sys.executable, str(FAKE_STAGE), name]
    for item in inputs:
        cmd += ["--input", f"/pfs/{item}"]
    cmd += ["--output", "/pfs/out"]
    transform: dict[str, Any] = {"image": "ignored-locally:1", "cmd": cmd}
    if transform_env:
        transform["env"] = transform_env
    return {"pipeline": {"name": name}, "transform": transform, "input": input_, **extra}


def project_like_specs(raw_glob: str = "/") -> list[dict[str, Any]]:
    """split <- raw_data; pre_process <- split; train <- pre_process; build <- train x split; export <- build."""
    return [
        spec("split", pfs("raw_data", raw_glob), ["raw_data"]),
        spec("pre_process", pfs("split"), ["split"]),
        spec("train", pfs("pre_process"), ["pre_process"]),
        spec("build", {"cross": [pfs("train"), pfs("split")]}, ["train", "split"]),
        spec("export", pfs("build"), ["build"]),
    ]


def write_specs(path: Path, specs: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(specs, indent=1))
    return path


CSV_HEADER = "issue_url,issue_title,body\r\n"


def issue_csv(path: Path, rows: int, seed: str = "a") -> Path:
    lines = [CSV_HEADER]
    for index in range(rows):
        body = f'"Body {seed} {index}, with a comma"'
        lines.append(f"https://github.com/o/r/issues/{index},Title {seed} {index},{body}\r\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path
