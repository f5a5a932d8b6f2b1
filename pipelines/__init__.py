"""The pipeline definitions, as data: shared by the Pulumi program (infra/) and the local runner (localpach/)."""

from pipelines.settings import PipelineSettings
from pipelines.specs import RAW_DATA_REPO, all_pipelines
from pipelines.validate import SpecError, validate_specs

__all__ = ["PipelineSettings", "RAW_DATA_REPO", "SpecError", "all_pipelines", "validate_specs"]
