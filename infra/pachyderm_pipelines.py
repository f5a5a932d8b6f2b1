"""The data path in the cluster: the `raw_data` repo and the five pipelines, created through pachd.

The specs come from `pipelines.all_pipelines`, the same data the local runner executes. Each pipeline is a dynamic
resource (infra/pachyderm_provider.py) that depends on the repo or pipelines it reads from, so `pulumi up` creates
them upstream first and `pulumi destroy` deletes them downstream first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra.pachyderm_provider import (
    DEFAULT_PROJECT,
    PachydermPipeline,
    PachydermPipelineArgs,
    PachydermRepo,
    PachydermRepoArgs,
)
from pipelines import RAW_DATA_REPO, PipelineSettings, all_pipelines
from pipelines.validate import input_leaves, input_repos, validate_specs

RAW_DATA_DESCRIPTION = "GitHub issues as CSV files (issue_url, issue_title, body): the input of split."


@dataclass(frozen=True)
class PachydermPipelinesArgs:
    pachd_address: pulumi.Input[str]
    settings: PipelineSettings
    project: str = DEFAULT_PROJECT
    auth_token: pulumi.Input[str] | None = None  # pachd's root token (a secret): pachd's auth is on


def in_project(spec: dict[str, Any], project: str) -> dict[str, Any]:
    """`spec` (fresh from `all_pipelines`) with the pipeline and the repos it reads placed in `project`."""
    spec["pipeline"] = {**spec["pipeline"], "project": {"name": project}}
    for leaf in input_leaves(spec["input"], spec["pipeline"]["name"]):
        leaf["project"] = project
    return spec


def _is_output(value: Any) -> bool:
    return isinstance(value, pulumi.Output)


def pipeline_specs(args: PachydermPipelinesArgs) -> list[dict[str, Any]]:
    """The five specs for this deployment, in dependency order, in the project, validated (pipelines/validate.py)
    before anything is declared; values still to come (the stage image's Output) are left to the provider's check."""
    specs = [in_project(spec, args.project) for spec in all_pipelines(args.settings)]
    validate_specs(specs, pending=_is_output)
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

        raw_data = PachydermRepo(
            f"{name}-{RAW_DATA_REPO}",
            PachydermRepoArgs(
                pachd_address=args.pachd_address,
                name=RAW_DATA_REPO,
                project=args.project,
                description=RAW_DATA_DESCRIPTION,
                auth_token=args.auth_token,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=waits),
        )
        made: dict[str, pulumi.Resource] = {RAW_DATA_REPO: raw_data}
        created: list[PachydermPipeline] = []
        for spec in specs:
            pipeline = spec["pipeline"]["name"]
            upstream = [made[repo] for repo in input_repos(spec)]  # validate_specs: each is made already
            made[pipeline] = resource = PachydermPipeline(
                f"{name}-{pipeline}",
                PachydermPipelineArgs(
                    pachd_address=args.pachd_address, spec=spec, project=args.project, auth_token=args.auth_token
                ),
                pulumi.ResourceOptions(parent=self, depends_on=[*waits, *upstream]),
            )
            created.append(resource)

        self.repo = raw_data.name
        self.pipelines = pulumi.Output.all(*[p.name for p in created])
        self.specs = pulumi.Output.all(*[p.spec for p in created])
        self.register_outputs({"repo": self.repo, "pipelines": self.pipelines, "specs": self.specs})
