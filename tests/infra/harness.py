"""The test suite's way to evaluate the program: the product's offline render (infra/render.py) with test secrets.

Everything but the secrets and the swappable mocks is infra.render's own, re-exported. The secrets are values no real
config could contain by accident, so finding one anywhere in plain text is a leak. `_Mocks` is looked up at each
call, so a test may put its own mocks subclass there (monkeypatch.setattr(harness, "_Mocks", ...)).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from infra.render import (
    ROOT,
    ROOT_TOKEN_KEY,
    STACKS,
    OfflineMocks,
    ProgramRun,
    Recorded,
    RecordingMonitor,
    is_secret_wrapper,
    normalise,
    stack_config,
    unwrap_secrets,
    without_secrets,
)
from infra.render import run_program as _render_run_program

__all__ = [
    "ROOT",
    "ROOT_TOKEN_KEY",
    "STACKS",
    "TEST_PASSWORD",
    "TEST_ROOT_TOKEN",
    "ProgramRun",
    "Recorded",
    "is_secret_wrapper",
    "normalise",
    "run_program",
    "shared_run",
    "stack_config",
    "unwrap_secrets",
    "without_secrets",
]

TEST_PASSWORD = "pw-7d1e3a-must-never-appear-in-plain-text"
# Pachyderm's root token (`issue-titles:pachdRootToken`), held to the same rule.
TEST_ROOT_TOKEN = "root-token-5c9b2f-must-never-appear-in-plain-text"

_Mocks = OfflineMocks
_RecordingMonitor = RecordingMonitor  # the same class: a spy set on it sees every registration
_REGISTER_RESOURCE = RecordingMonitor.RegisterResource  # as defined, to tell when a test has put a spy there


def run_program(
    stack: str,
    config_overrides: dict[str, str | None] | None = None,
    *,
    password: str | None = TEST_PASSWORD,
    root_token: str | None = TEST_ROOT_TOKEN,
    **options: Any,
) -> ProgramRun:
    """infra.render.run_program with the test secrets and this module's `_Mocks`."""
    return _render_run_program(
        stack, config_overrides, password=password, root_token=root_token, mocks=_Mocks, **options
    )


# One evaluation per (stack, overrides) per process, for `shared_run`.
_SHARED_RUNS: dict[str, ProgramRun] = {}


def shared_run(stack: str, config_overrides: dict[str, str | None] | None = None) -> ProgramRun:
    """`run_program(stack, config_overrides)` (the test secrets, the offline mocks), evaluated once per process and
    handed out as a deep copy of that evaluation.

    An evaluation costs about 0.4 s of CPU and is the same every time for the same config (the program reads nothing
    else offline); a deep copy costs a few milliseconds, and a test that changes its copy changes nothing another
    test sees. For tests that only read what the program declares: a test that swaps the mocks, spies on the monitor
    or patches what the program calls must evaluate it itself (`run_program`); with mocks other than the offline ones
    in place this evaluates afresh rather than hand out a run made without them."""
    if _Mocks is not OfflineMocks or _RecordingMonitor.RegisterResource is not _REGISTER_RESOURCE:
        return run_program(stack, config_overrides)
    key = json.dumps([stack, config_overrides or {}], sort_keys=True)
    if key not in _SHARED_RUNS:
        _SHARED_RUNS[key] = run_program(stack, config_overrides)
    return copy.deepcopy(_SHARED_RUNS[key])


def plain_text_leaks(run: ProgramRun, forms: Sequence[str], *, secret_outputs_too: bool = False) -> list[str]:
    """Where one of `forms` (a secret and its encodings) shows in plain text: a resource's inputs and outputs outside
    their secrets, and the stack outputs (those marked secret only with `secret_outputs_too`)."""
    leaks = []
    for resource in run:
        plain = json.dumps(without_secrets(resource.wire))
        leaks += [f"{resource.type_} {resource.name}" for form in forms if form in plain]
    for key, value in run.outputs.items():
        if secret_outputs_too or key not in run.secret_outputs:
            leaks += [f"output {key}" for form in forms if form in json.dumps(value)]
    return leaks
