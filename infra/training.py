"""Who may start training TFJobs: the train pipeline's own service account, in the pipelines' namespace only.

With `issue-titles:trainer: tfjob` the train pipeline's worker creates a TFJob per job (stages launch-tfjob). Its pod
runs as `issue-titles-trainer` (the pipeline's podPatch, pipelines/specs.py), not as `pachyderm-worker`, which every
other pipeline shares: only the train step gets the right to manage TFJobs, through a Role (not a ClusterRole) in
its own namespace, with the verbs the launcher uses (create, get, delete) and watch, and nothing else. With Pachyderm
auth on the replicas sign their S3 requests with the pipeline's token, which the launcher hands them through a Secret
per job (owned by the TFJob, deleted when the job ends): so the Role also grants `create` and `delete` on Secrets,
and not `get`, `list` or `watch`: the account can make and remove the job's Secret but read no Secret in the
namespace (the registry credentials included). The launcher replaces a stale Secret by delete + create, without
reading it.

The account also gets what every Pachyderm worker account has, through the chart's own Role `pachyderm-worker`
(pachyderm/pachyderm 2.12.x etc/helm/pachyderm/templates/pachd/rbac/worker-role.yaml: services and pods), because the
pod's storage sidecar runs under it too and, for an S3-enabled pipeline, creates each job's S3 gateway Service
(src/server/pps/server/s3g_sidecar.go). On GKE it carries the same Workload Identity as `pachyderm-worker`, so the
sidecar still reaches the bucket (infra/cluster.py binds the identity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.cluster import PACHYDERM_WORKER_SERVICE_ACCOUNT
from infra.labels import labels
from pipelines.specs import TRAINER_SERVICE_ACCOUNT

TFJOB_ROLE = "tfjob-launcher"
# What `stages launch-tfjob` does with its TFJob (issue_titles/tfjob.py KubeApi), plus watch to follow it.
TFJOB_VERBS = ("create", "get", "watch", "delete")
# The job's credentials Secret (issue_titles/tfjob.py KubeApi.create_secret, delete_secret): write-only.
SECRET_VERBS = ("create", "delete")
TFJOB_RULES = [
    {"apiGroups": ["kubeflow.org"], "resources": ["tfjobs"], "verbs": list(TFJOB_VERBS)},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": list(SECRET_VERBS)},
]


def trainer_account_annotations(storage_service_account: str | None) -> dict[str, str]:
    return {"iam.gke.io/gcp-service-account": storage_service_account} if storage_service_account else {}


@dataclass(frozen=True)
class TrainerAccessArgs:
    namespace: pulumi.Input[str]
    storage_service_account: pulumi.Input[str] | None = None  # GKE: the Workload Identity of the bucket


class TrainerAccess(pulumi.ComponentResource):
    """ServiceAccount `issue-titles-trainer`, Role `tfjob-launcher` and the bindings, in the pipelines' namespace."""

    service_account: pulumi.Output[str]

    def __init__(self, name: str, args: TrainerAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:TrainerAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        meta: dict[str, Any] = {"namespace": args.namespace, "labels": labels("training")}
        annotations = (
            pulumi.Output.from_input(args.storage_service_account).apply(trainer_account_annotations)
            if args.storage_service_account is not None
            else None
        )
        account = k8s.core.v1.ServiceAccount(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TRAINER_SERVICE_ACCOUNT, annotations=annotations, **meta),
            opts=child,
        )
        # pulumi-kubernetes types rules=, role_ref= and subjects= only as its snake_case Args/ArgsDict forms; the
        # provider takes these Kubernetes JSON (camelCase) dicts as they are.
        role = k8s.rbac.v1.Role(
            f"{name}-tfjobs",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TFJOB_ROLE, **meta),
            rules=TFJOB_RULES,  # type: ignore[arg-type]  # camelCase JSON, see above
            opts=child,
        )
        subject = [{"kind": "ServiceAccount", "name": TRAINER_SERVICE_ACCOUNT, "namespace": args.namespace}]
        k8s.rbac.v1.RoleBinding(  # type: ignore[call-overload]  # camelCase JSON, see above
            f"{name}-tfjobs",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=TFJOB_ROLE, **meta),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TFJOB_ROLE},
            subjects=subject,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, role]),
        )
        # The chart's worker Role (it exists once Pachyderm is installed: the program makes this depend on it).
        k8s.rbac.v1.RoleBinding(  # type: ignore[call-overload]  # camelCase JSON, see above
            f"{name}-worker",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{TRAINER_SERVICE_ACCOUNT}-worker", **meta),
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": PACHYDERM_WORKER_SERVICE_ACCOUNT,
            },
            subjects=subject,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )
        self.service_account = account.metadata.name
        self.register_outputs({"service_account": self.service_account, "role": TFJOB_ROLE})
