"""The one home of the pipeline spec rules: the input-tree walker and the validator. No I/O, no Pulumi.

Every caller uses these, so a spec is judged the same way everywhere: the Pulumi program before it declares a
pipeline (infra/pachyderm_pipelines.py) and in the dynamic provider's `check` (infra/pachyderm_provider.py), and the
local runner when it loads specs (localpach/specs.py) and cuts datums (localpach/datums.py).

Values not known yet (a `pulumi.Output` while the program runs, Pulumi's unknown marker in a preview) are the
caller's to recognise: it passes `pending`, and the checks skip those values rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipelines.settings import REPROCESS_SPECS
from pipelines.specs import RAW_DATA_REPO

# The input kinds both the cluster and the local runner honour (Pachyderm's join and group are not used here).
INPUT_KINDS = ("pfs", "cross", "union")

Pending = Callable[[Any], bool]


class SpecError(ValueError):
    """A pipeline spec that Pachyderm would refuse; the message names the pipeline and the field."""


def _known(_value: Any) -> bool:
    return False


def walk_input(
    input_: Any,
    pipeline: str,
    *,
    leaf: Callable[[dict[str, Any]], Any],
    cross: Callable[[list[Any]], Any],
    union: Callable[[list[Any]], Any],
) -> Any:
    """The one walk of an input tree: check each node's shape, map each `pfs` leaf dict with `leaf`, and combine
    the children's results with `cross` or `union`.

    Shape: one kind per node, a repo and a glob per leaf, non-empty `cross` / `union` lists.
    """
    if not isinstance(input_, Mapping) or len(input_) != 1:
        raise SpecError(f"pipeline {pipeline}: input must have exactly one of {', '.join(INPUT_KINDS)}")
    ((kind, value),) = input_.items()
    if kind == "pfs":
        if not isinstance(value, Mapping) or not value.get("repo"):
            raise SpecError(f"pipeline {pipeline}: pfs input needs a repo")
        if value.get("glob") is None:
            raise SpecError(f"pipeline {pipeline}: pfs input {value['repo']} needs a glob")
        return leaf(value)  # type: ignore[arg-type]
    if kind in ("cross", "union"):
        if not isinstance(value, list) or not value:
            raise SpecError(f"pipeline {pipeline}: {kind} input needs a non-empty list")
        children = [walk_input(child, pipeline, leaf=leaf, cross=cross, union=union) for child in value]
        return cross(children) if kind == "cross" else union(children)
    raise SpecError(f"pipeline {pipeline}: input type {kind!r} is not supported (supported: {', '.join(INPUT_KINDS)})")


def input_leaves(input_: Any, pipeline: str) -> list[dict[str, Any]]:
    """Every `pfs` leaf of an input tree, in order: the leaf dicts themselves (callers may read or fill them).

    Besides the shape `walk_input` checks, no input name may appear twice in a `cross` (each becomes /pfs/<name>).
    """

    def crossed(children: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        leaves = [item for child in children for item in child]
        names = [input_name(item) for item in leaves]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise SpecError(f"pipeline {pipeline}: input name(s) {', '.join(duplicates)} used twice in a cross")
        return leaves

    return walk_input(
        input_,
        pipeline,
        leaf=lambda value: [value],
        cross=crossed,
        union=lambda children: [item for child in children for item in child],
    )


def input_name(leaf: Mapping[str, Any]) -> str:
    """The folder a `pfs` leaf appears under (/pfs/<name>): its `name`, else its repo."""
    return leaf.get("name") or leaf["repo"]


def input_repos(spec: Mapping[str, Any]) -> list[str]:
    """The repos a spec reads, each once, in input order."""
    return list(dict.fromkeys(leaf["repo"] for leaf in input_leaves(spec.get("input"), pipeline_name(spec))))


def pipeline_name(spec: Any) -> Any:
    return (spec.get("pipeline") or {}).get("name") if isinstance(spec, Mapping) else None


def spec_problems(spec: Any, *, image_required: bool = True, pending: Pending = _known) -> list[str]:
    """What is wrong with one spec (empty when nothing is), each message naming the pipeline and the field.

    `image_required=False` is for the local runner, which runs `transform.cmd` from its own virtualenv.
    """
    if not isinstance(spec, Mapping):
        return ["a pipeline spec must be a JSON object"]
    name = pipeline_name(spec)
    if pending(name):
        name = "?"
    elif not isinstance(name, str) or not name:
        return ["pipeline.name is missing: every pipeline needs a name"]
    problems: list[str] = []
    transform = spec.get("transform")
    if not isinstance(transform, Mapping):
        return [f"pipeline {name}: transform is missing"]
    image, cmd = transform.get("image"), transform.get("cmd")
    if image_required and not pending(image) and (not isinstance(image, str) or not image.strip()):
        problems.append(f"pipeline {name}: transform.image is required")
    if not pending(cmd) and (
        not isinstance(cmd, list) or not cmd or not all(isinstance(part, str) or pending(part) for part in cmd)
    ):
        problems.append(f"pipeline {name}: transform.cmd must be a non-empty list of strings")
    if "input" not in spec:
        problems.append(f"pipeline {name}: no input")
    elif not pending(spec["input"]):
        try:
            input_leaves(spec["input"], name)
        except SpecError as error:
            problems.append(str(error))
    # Pachyderm 2.12 refuses these at create time (pachyderm/pachyderm 2.12.x src/server/pps/server/api_server.go).
    if spec.get("tfJob") is not None:
        problems.append(
            f'pipeline {name}: tfJob is refused by Pachyderm 2.12 ("embedding TFJobs in pipelines is '
            'not supported yet"): let the transform create the TFJob (trainer tfjob)'
        )
    if spec.get("s3Out") and (spec.get("service") is not None or spec.get("spout") is not None):
        problems.append(f"pipeline {name}: s3Out is not supported in spouts or services")
    if "input" in spec and not pending(spec["input"]) and not problems:
        for leaf in input_leaves(spec["input"], name):
            if leaf.get("s3") and leaf.get("glob") != "/":
                problems.append(
                    f'pipeline {name}: input {input_name(leaf)} sets s3, so its glob must be "/" '
                    "(the S3 gateway serves whole commits)"
                )
            if leaf.get("s3") and (leaf.get("lazy") or leaf.get("emptyFiles")):
                problems.append(f"pipeline {name}: input {input_name(leaf)} cannot set s3 with lazy or emptyFiles")
    reprocess = spec.get("reprocessSpec")  # absent or "" (the proto default) means until_success
    if reprocess not in (None, "") and not pending(reprocess) and reprocess not in REPROCESS_SPECS:
        problems.append(
            f"pipeline {name}: reprocessSpec must be one of {', '.join(REPROCESS_SPECS)}, not {reprocess!r}"
        )
    return problems


def validate_spec(spec: Any, *, image_required: bool = True, pending: Pending = _known) -> None:
    """Raise SpecError with the first problem `spec_problems` finds."""
    problems = spec_problems(spec, image_required=image_required, pending=pending)
    if problems:
        raise SpecError(problems[0])


def validate_specs(specs: Iterable[Mapping[str, Any]], *, pending: Pending = _known) -> None:
    """The project's chain: each spec well formed, reading only raw_data or a pipeline declared before it."""
    known = {RAW_DATA_REPO}
    for spec in specs:
        validate_spec(spec, pending=pending)
        name = pipeline_name(spec)
        for repo in input_repos(spec):
            if repo not in known:
                raise SpecError(f"pipeline {name}: input repo {repo!r} is neither raw_data nor an earlier pipeline")
        known.add(name)
