"""The pipeline definitions, as data: shared by the Pulumi program (infra/) and the local runner (localpach/)."""

from pipelines.settings import PipelineSettings
from pipelines.specs import RAW_DATA_REPO, all_pipelines
from pipelines.validate import SpecError, input_leaves, spec_problems, validate_spec, validate_specs, walk_input

__all__ = [
    "RAW_DATA_REPO",
    "PipelineSettings",
    "SpecError",
    "all_pipelines",
    "input_leaves",
    "spec_problems",
    "validate_spec",
    "validate_specs",
    "walk_input",
]
