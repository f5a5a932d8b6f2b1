"""One evaluation of the program per stack (and per stack with a model tag), shared by the tests that read it (the
same evaluation `harness.shared_run` hands to the tests that ask for it by config)."""

from __future__ import annotations

import pytest

from tests.infra.harness import STACKS, ProgramRun, shared_run

MODEL_TAG = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(scope="session", params=STACKS)
def program(request: pytest.FixtureRequest) -> ProgramRun:
    """The stack as committed: no model exported yet, so no SeldonDeployment."""
    return shared_run(request.param)


@pytest.fixture(scope="session", params=STACKS)
def serving_program(request: pytest.FixtureRequest) -> ProgramRun:
    """The stack after an export job: `serving:modelTag` names the image to serve."""
    return shared_run(request.param, {"serving:modelTag": MODEL_TAG})
