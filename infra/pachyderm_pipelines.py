"""The data path in the cluster: the `raw_data` repo and the five pipelines, created through pachd.

The specs come from `pipelines.all_pipelines`, the same data the local runner executes. Each pipeline is a dynamic
resource (infra/pachyderm_provider.py) that depends on the repo or pipelines it reads from, so `pulumi up` creates
them upstream first and `pulumi destroy` deletes them downstream first.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping

import pulumi

from infra.pachyderm_provider import (DEFAULT_PROJECT, PachydermPipeline, PachydermPipelineArgs, PachydermRepo,
                                      PachydermRepoArgs)
from pipelines import RAW_DATA_REPO, PipelineSettings, all_pipelines

# Stands in for the stage image while the settings are built (PipelineSettings wants a string, the image reference
# is an Output of the image build); every occurrence in the specs is swapped for the real reference.
STAGE_IMAGE_PLACEHOLDER = "stage-image.invalid/placeholder:resolved-by-pulumi"
RAW_DATA_DESCRIPTION = "GitHub issues as CSV files (issue_url, issue_title, body): the input of split."


@dataclass(frozen=True)
class PachydermPipelinesArgs:
    pachd_address: pulumi.Input[str]
    settings: PipelineSettings
    project: str = DEFAULT_PROJECT
    # The image every step runs, e.g. StageImage.image_ref; when set it replaces settings.stage_image in the specs.
    stage_image: pulumi.Input[str] | None = None


def input_repos(input_: Mapping[str, Any] | None) -> Iterator[str]:
    """The repos a pipeline input reads, through cross / union / join / group."""
    if not input_:
        return
    if "pfs" in input_:
        yield input_["pfs"]["repo"]
    for combined in ("cross", "union", "join", "group"):
        for item in input_.get(combined) or []:
            yield from input_repos(item)


def in_project(spec: Mapping[str, Any], project: str) -> dict[str, Any]:
    """The spec with the pipeline and the repos it reads placed in `project`."""
    spec = copy.deepcopy(dict(spec))
    spec["pipeline"] = {**spec["pipeline"], "project": {"name": project}}

    def place(input_: dict[str, Any] | None) -> None:
        if not input_:
            return
        if "pfs" in input_:
            input_["pfs"]["project"] = project
        for combined in ("cross", "union", "join", "group"):
            for item in input_.get(combined) or []:
                place(item)

    place(spec.get("input"))
    return spec


def with_stage_image(value: Any, image: pulumi.Input[str]) -> Any:
    """`value` with the placeholder swapped for `image` wherever it occurs (transform.image, `--base-image`).

    Only those strings become Outputs, so a preview with the image not yet built still shows every other field.
    """
    if isinstance(value, str) and STAGE_IMAGE_PLACEHOLDER in value:
        if value == STAGE_IMAGE_PLACEHOLDER:
            return image
        return pulumi.Output.from_input(image).apply(lambda ref, text=value: text.replace(STAGE_IMAGE_PLACEHOLDER, ref))
    if isinstance(value, Mapping):
        return {key: with_stage_image(item, image) for key, item in value.items()}
    if isinstance(value, list):
        return [with_stage_image(item, image) for item in value]
    return value


def pipeline_specs(args: PachydermPipelinesArgs) -> list[dict[str, Any]]:
    """The five specs for this deployment, in dependency order, with the stage image and project filled in."""
    settings = args.settings
    if args.stage_image is not None:
        settings = replace(settings, stage_image=STAGE_IMAGE_PLACEHOLDER)
    elif settings.stage_image == STAGE_IMAGE_PLACEHOLDER:
        raise ValueError("PachydermPipelinesArgs: settings.stage_image is the placeholder but no stage_image is given")
    specs = [in_project(spec, args.project) for spec in all_pipelines(settings)]
    if args.stage_image is not None:
        specs = [with_stage_image(spec, args.stage_image) for spec in specs]
    return specs


def _caller_dependencies(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """The component's own depends_on (pachd, the image, the registry secret), handed to every child explicitly:
    a child of a component does not wait for what the component waits for."""
    depends_on = opts.depends_on if opts is not None else None
    if depends_on is None:
        return []
    if isinstance(depends_on, pulumi.Resource):
        return [depends_on]
    if isinstance(depends_on, (list, tuple)):
        return [d for d in depends_on if isinstance(d, pulumi.Resource)]
    return []


class PachydermPipelines(pulumi.ComponentResource):
    """`raw_data` -> split -> pre_process -> train -> build -> export, as resources of the stack."""

    repo: pulumi.Output[str]
    pipelines: pulumi.Output[list[str]]
    specs: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: PachydermPipelinesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:PachydermPipelines", name, None, opts)
        waits = _caller_dependencies(opts)
        specs = pipeline_specs(args)

        raw_data = PachydermRepo(f"{name}-{RAW_DATA_REPO}", PachydermRepoArgs(
            pachd_address=args.pachd_address, name=RAW_DATA_REPO, project=args.project,
            description=RAW_DATA_DESCRIPTION), pulumi.ResourceOptions(parent=self, depends_on=waits))
        made: dict[str, pulumi.Resource] = {RAW_DATA_REPO: raw_data}
        created: list[PachydermPipeline] = []
        for spec in specs:
            pipeline = spec["pipeline"]["name"]
            upstream = []
            for repo in dict.fromkeys(input_repos(spec.get("input"))):
                if repo not in made:
                    raise ValueError(f"pipeline {pipeline!r} reads repo {repo!r}, which neither {RAW_DATA_REPO!r} "
                                     f"nor an earlier pipeline provides")
                upstream.append(made[repo])
            made[pipeline] = resource = PachydermPipeline(
                f"{name}-{pipeline}",
                PachydermPipelineArgs(pachd_address=args.pachd_address, spec=spec, project=args.project),
                pulumi.ResourceOptions(parent=self, depends_on=[*waits, *upstream]))
            created.append(resource)

        self.repo = raw_data.name
        self.pipelines = pulumi.Output.all(*[p.name for p in created])
        self.specs = pulumi.Output.all(*[p.spec for p in created])
        self.register_outputs({"repo": self.repo, "pipelines": self.pipelines, "specs": self.specs})
