"""The training operator comes from the repository, rendered from kubeflow/training-operator v1.9.0, not the network.

Upstream: kubeflow/training-operator, tag v1.9.0 (commit 6f74c7f6b2), manifests/overlays/standalone/kustomization.yaml
(`namespace: kubeflow`, `images: kubeflow/training-operator newTag v1-5170a36`, `secretGenerator
training-operator-webhook-cert`) over manifests/base (six job CRDs, RBAC, webhook, Service, Deployment). Apache-2.0.
"""

from __future__ import annotations

import hashlib
import re

from infra.operators import PROJECT_ROOT, TRAINING_OPERATOR_MANIFESTS
from tests.infra.harness import ProgramRun
from tests.infra.vendored import kinds, objects

FOLDER = PROJECT_ROOT / "infra" / "manifests" / "training-operator-v1.9.0"


def test_the_program_applies_the_committed_file_not_a_remote_kustomization(program: ProgramRun) -> None:
    config_file = program.one("kubernetes:yaml/v2:ConfigFile")
    assert config_file.inputs["file"] == TRAINING_OPERATOR_MANIFESTS["v1.9.0"]
    assert (PROJECT_ROOT / config_file.inputs["file"]).is_file()
    assert "://" not in config_file.inputs["file"]
    assert not [r for r in program if r.type_.startswith("kubernetes:kustomize/")]


def test_the_file_is_the_recorded_rendering() -> None:
    """PROVENANCE.md records the hash: a hand edit (or a partial regeneration) fails here."""
    provenance = (FOLDER / "PROVENANCE.md").read_text()
    recorded = re.search(r"sha256 of `standalone.yaml` \| `([0-9a-f]{64})`", provenance)
    assert recorded, "PROVENANCE.md records the sha256 of standalone.yaml"
    assert hashlib.sha256((FOLDER / "standalone.yaml").read_bytes()).hexdigest() == recorded.group(1)
    for fact in (
        "https://github.com/kubeflow/training-operator",
        "`v1.9.0`",
        "manifests/overlays/standalone",
        "Apache-2.0",
    ):
        assert fact in provenance, fact
    assert "Apache License" in (FOLDER / "LICENSE").read_text() and "Version 2.0" in (FOLDER / "LICENSE").read_text()


def test_it_holds_what_the_standalone_overlay_renders() -> None:
    assert sorted(kinds()) == sorted(
        [
            ("Namespace", "kubeflow"),
            *[
                ("CustomResourceDefinition", f"{job}.kubeflow.org")
                for job in ("tfjobs", "pytorchjobs", "xgboostjobs", "mpijobs", "paddlejobs", "jaxjobs")
            ],
            ("ServiceAccount", "training-operator"),
            ("ClusterRole", "training-operator"),
            ("ClusterRoleBinding", "training-operator"),
            ("Secret", "training-operator-webhook-cert"),
            ("Service", "training-operator"),
            ("Deployment", "training-operator"),
            ("ValidatingWebhookConfiguration", "validator.training-operator.kubeflow.org"),
        ]
    )


def test_the_operator_runs_the_image_the_overlay_pins_in_the_kubeflow_namespace() -> None:
    (deployment,) = objects("Deployment")
    assert deployment["metadata"]["namespace"] == "kubeflow"
    assert [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [
        "kubeflow/training-operator:v1-5170a36"
    ]


def test_the_tfjob_crd_serves_kubeflow_org_v1_for_the_image_check(program: ProgramRun) -> None:
    tfjobs = next(c for c in objects("CustomResourceDefinition") if c["metadata"]["name"] == "tfjobs.kubeflow.org")
    tfjob = next(m for m in program.manifests() if m["kind"] == "TFJob")
    group, version = tfjob["apiVersion"].split("/")
    assert tfjobs["spec"]["group"] == group
    assert [v["name"] for v in tfjobs["spec"]["versions"] if v["served"]] == [version]
