"""Datums as in Pachyderm: glob patterns cut each input commit into units of work; cross and union combine them.

A `pfs` input with glob "/" is one datum (the whole commit); "/*" is one datum per top-level entry (file or
directory, with everything below it); deeper patterns match deeper paths, `**` any number of levels. A `cross`
input is the cartesian product of its children's datums, a `union` their concatenation.

Each datum has a hash over the pipeline spec and the exact file contents it sees: a datum whose hash was already
processed successfully is skipped and its earlier output reused (Pachyderm's incremental processing).
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass
from typing import Any

from localpach.errors import SpecError
from localpach.fsutil import sha256_json
from localpach.pfs import DEFAULT_BRANCH, Commit, files_under, normalize_path
from localpach.store import StoredObject
from pipelines.validate import SpecError as PipelineSpecError
from pipelines.validate import input_leaves, input_name, walk_input


@dataclass(frozen=True)
class PfsInput:
    """One `pfs` leaf of a pipeline's input tree."""

    name: str
    repo: str
    branch: str
    glob: str


@dataclass(frozen=True)
class DatumInput:
    """The part of one input that a datum sees: the glob match and the files at or below it."""

    name: str
    repo: str
    commit: str
    path: str  # the glob match, '' for the whole commit
    files: dict[str, StoredObject]


@dataclass(frozen=True)
class Datum:
    inputs: tuple[DatumInput, ...]

    def hash(self, spec_hash: str) -> str:
        return sha256_json(
            {
                "spec": spec_hash,
                "inputs": [
                    [item.name, item.path, sorted((path, obj.hash) for path, obj in item.files.items())]
                    for item in self.inputs
                ],
            }
        )

    def describe(self) -> str:
        return ", ".join(f"{item.name}:/{item.path}" for item in self.inputs)

    @property
    def size(self) -> int:
        return sum(obj.size for item in self.inputs for obj in item.files.values())


def pfs_inputs(spec_input: dict[str, Any], pipeline: str) -> list[PfsInput]:
    """Every `pfs` leaf of an input tree (pipelines/validate.py's walker and its checks)."""
    try:
        leaves = input_leaves(spec_input, pipeline)
    except PipelineSpecError as error:
        raise SpecError(str(error)) from None
    return [
        PfsInput(
            name=input_name(leaf), repo=leaf["repo"], branch=leaf.get("branch") or DEFAULT_BRANCH, glob=leaf["glob"]
        )
        for leaf in leaves
    ]


def _match_segments(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match_segments(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match_segments(parts[1:], rest)


def glob_matches(paths: list[str], glob: str) -> list[str]:
    """Repo paths (files or directories) that `glob` selects, sorted; [''] means the whole commit."""
    pattern = normalize_path(glob) if glob.strip() not in ("", "/") else ""
    if not paths:
        return []
    if pattern == "":
        return [""]
    candidates: set[str] = set()
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            candidates.add("/".join(parts[:depth]))
    segments = pattern.split("/")
    return sorted(path for path in candidates if _match_segments(path.split("/"), segments))


def expand(spec_input: dict[str, Any], commits: dict[str, Commit], pipeline: str) -> list[Datum]:
    """The datums of an input tree, given the commit each input name reads."""

    def leaf_datums(leaf: dict[str, Any]) -> list[Datum]:
        commit = commits[input_name(leaf)]
        return [
            Datum((DatumInput(input_name(leaf), leaf["repo"], commit.id, match, files_under(commit, match)),))
            for match in glob_matches(sorted(commit.files), leaf["glob"])
        ]

    def crossed(children: list[list[Datum]]) -> list[Datum]:
        return [
            Datum(tuple(item for datum in combination for item in datum.inputs))
            for combination in itertools.product(*children)
        ]

    try:
        return walk_input(
            spec_input,
            pipeline,
            leaf=leaf_datums,
            cross=crossed,
            union=lambda children: [datum for child in children for datum in child],
        )
    except PipelineSpecError as error:
        raise SpecError(str(error)) from None
