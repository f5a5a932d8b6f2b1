"""The bundle/serving names infra and localpach read from pipelines.contract are the ones the stages write."""

import re
from pathlib import Path

import issue_titles.contract as stages_contract
import pipelines.contract as shared_contract


def test_the_shared_contract_is_the_stages_contract():
    shared = {name: value for name, value in vars(shared_contract).items() if name.isupper()}
    assert shared == {name: getattr(stages_contract, name) for name in shared}


def test_the_stage_images_user_is_the_contracts() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "stages" / "Dockerfile").read_text()
    useradd = re.search(r"useradd --uid (\d+) ", dockerfile)
    assert useradd is not None and useradd.group(1) == str(shared_contract.STAGE_UID)
    assert f"USER {shared_contract.STAGE_UID}:{shared_contract.STAGE_UID}" in dockerfile


def test_the_programs_training_ranges_are_the_stages() -> None:
    """A value PipelineSettings (and so the stack config) accepts is one `stages split`/`train` accept, and back."""
    from issue_titles.limits import TRAINING_RANGES as stage_ranges
    from pipelines.settings import TRAINING_RANGES as pipeline_ranges

    assert pipeline_ranges == stage_ranges
