"""The vendored schemas are the upstream files, byte for byte (tests/schemas/README.md records their sha256)."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests import schemas

NAMES = [
    "pachyderm-CreatePipelineRequest.schema.json",
    "pachyderm-helm-values.schema.json",
    "seldon-core-1.17.1-seldondeployments.crd.yaml",
    "kubeflow-training-operator-1.9.0-tfjobs.crd.yaml",
    "prometheus-operator-0.93.0-podmonitors.crd.yaml",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_vendored_schema_has_the_recorded_upstream_sha256(name: str) -> None:
    readme = (schemas.SCHEMAS / "README.md").read_text()
    recorded = re.search(rf"\| `{re.escape(name)}` \| `([0-9a-f]{{64}})` \|", readme)
    assert recorded, f"tests/schemas/README.md records the sha256 of {name}"
    assert hashlib.sha256(schemas.raw(name)).hexdigest() == recorded.group(1)
