"""Cluster access: a kube context on minikube, or a GKE cluster with a GPU pool, a bucket and an identity on GKE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.config import GkeConfig

# The Kubernetes service account the Pachyderm chart runs pachd under; it reads and writes the bucket.
PACHD_SERVICE_ACCOUNT = "pachyderm"
# The one pipeline workers run under: pachd reads it from WORKER_SERVICE_ACCOUNT, which the chart fills from
# `pachd.worker.serviceAccount.name` (pachyderm/pachyderm 2.12.x etc/helm/pachyderm/templates/pachd/deployment.yaml;
# src/server/pps/server/worker_rc.go falls back to "pachyderm-worker"). The workers' storage sidecars read and write
# the bucket themselves, so this account needs the same Workload Identity binding as pachd's.
PACHYDERM_WORKER_SERVICE_ACCOUNT = "pachyderm-worker"


@dataclass(frozen=True)
class ClusterAccessArgs:
    cluster: str  # "minikube" or "gke"
    namespace: str
    kube_context: str | None = None
    gke: GkeConfig | None = None
    # More Kubernetes service accounts whose pods' storage sidecars reach the bucket (the TFJob trainer's).
    bucket_accounts: tuple[str, ...] = ()


def gke_kubeconfig(name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig that authenticates with gke-gcloud-auth-plugin, so no long-lived credential is stored."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: https://{endpoint}
    certificate-authority-data: {ca_certificate}
contexts:
- name: {name}
  context: {{cluster: {name}, user: {name}}}
current-context: {name}
users:
- name: {name}
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      installHint: Install gke-gcloud-auth-plugin (gcloud components install gke-gcloud-auth-plugin)
      provideClusterInfo: true
"""


class ClusterAccess(pulumi.ComponentResource):
    """The Kubernetes provider every other component uses; on GKE, also the cluster, its pools and the bucket."""

    provider: k8s.Provider
    bucket_name: pulumi.Output[str] | None
    storage_service_account: pulumi.Output[str] | None

    def __init__(self, name: str, args: ClusterAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:ClusterAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket_name = None
        self.storage_service_account = None
        self._bucket_accounts = args.bucket_accounts
        if args.cluster == "gke":
            assert args.gke is not None, "the GKE settings are read by load_config for cluster=gke"
            kubeconfig = self._gke(name, args.gke, args.namespace, child)
            self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, opts=child)
            self.description = pulumi.Output.concat("GKE cluster ", self.cluster.name, " in ", args.gke.location)
        else:
            self.provider = k8s.Provider(f"{name}-k8s", context=args.kube_context, opts=child)
            self.description = pulumi.Output.from_input(f"kube context {args.kube_context or '(current)'}")
        self.register_outputs({"description": self.description, "bucket": self.bucket_name})

    def _gke(self, name: str, gke: GkeConfig, namespace: str, child: pulumi.ResourceOptions) -> pulumi.Output[str]:
        self.cluster = gcp.container.Cluster(
            name,
            location=gke.location,
            project=gke.project,
            initial_node_count=1,
            remove_default_node_pool=True,  # the pools below are managed on their own
            deletion_protection=False,  # `pulumi destroy` must be able to remove it
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{gke.project}.svc.id.goog"
            ),
            network_policy=gcp.container.ClusterNetworkPolicyArgs(enabled=True, provider="CALICO"),
            addons_config=gcp.container.ClusterAddonsConfigArgs(
                network_policy_config=gcp.container.ClusterAddonsConfigNetworkPolicyConfigArgs(disabled=False)
            ),
            opts=child,
        )
        on_cluster = pulumi.ResourceOptions(parent=self, depends_on=[self.cluster])

        def node_pool(
            suffix: str,
            machine_type: str,
            accelerators: list[gcp.container.NodePoolNodeConfigGuestAcceleratorArgs] | None = None,
            **sizing: Any,
        ) -> gcp.container.NodePool:
            """Every pool's nodes have the cloud-platform scope and expose only GKE's metadata server, so pods
            reach Google APIs as their Workload Identity, never as the node's service account."""
            return gcp.container.NodePool(
                f"{name}-{suffix}",
                cluster=self.cluster.name,
                location=gke.location,
                project=gke.project,
                node_config=gcp.container.NodePoolNodeConfigArgs(
                    machine_type=machine_type,
                    oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
                    workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                        mode="GKE_METADATA"
                    ),
                    guest_accelerators=accelerators,
                ),
                opts=on_cluster,
                **sizing,
            )

        self.cpu_pool = node_pool("cpu", gke.cpu_machine_type, node_count=2)
        # Scales from zero: GPU nodes only exist while a training job wants one. GKE installs the driver and
        # taints the nodes with nvidia.com/gpu, which is why the train pipeline carries the matching toleration.
        self.gpu_pool = node_pool(
            "gpu",
            gke.gpu_machine_type,
            initial_node_count=0,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(min_node_count=0, max_node_count=gke.gpu_nodes_max),
            accelerators=[
                gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=gke.gpu_type,
                    count=1,
                    gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                        gpu_driver_version="DEFAULT"
                    ),
                )
            ],
        )
        self.bucket = gcp.storage.Bucket(
            f"{name}-pachyderm",
            location=gke.location.rsplit("-", 1)[0].upper() if gke.location.count("-") == 2 else gke.location,
            project=gke.project,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=gke.bucket_force_destroy,
            opts=child,
        )
        self.storage_account = gcp.serviceaccount.Account(
            f"{name}-pachyderm",
            account_id="issue-titles-pachyderm",
            display_name="Pachyderm storage for issue-titles",
            project=gke.project,
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-pachyderm-bucket",
            bucket=self.bucket.name,
            role="roles/storage.objectAdmin",  # objects only: pachd never creates or deletes buckets
            member=self.storage_account.email.apply(lambda email: f"serviceAccount:{email}"),
            opts=child,
        )
        accounts = (
            ("", PACHD_SERVICE_ACCOUNT),
            ("-worker", PACHYDERM_WORKER_SERVICE_ACCOUNT),
            *((f"-{account}", account) for account in self._bucket_accounts),
        )
        for suffix, account in accounts:
            gcp.serviceaccount.IAMMember(
                f"{name}-pachyderm{suffix}-workload-identity",
                service_account_id=self.storage_account.name,
                role="roles/iam.workloadIdentityUser",
                member=f"serviceAccount:{gke.project}.svc.id.goog[{namespace}/{account}]",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cluster]),
            )
        self.bucket_name = self.bucket.name
        self.storage_service_account = self.storage_account.email
        kubeconfig = pulumi.Output.all(
            self.cluster.name, self.cluster.endpoint, self.cluster.master_auth.cluster_ca_certificate
        ).apply(lambda parts: gke_kubeconfig(*parts))
        # The node pools must exist before anything is scheduled; the provider is what every workload goes through.
        return pulumi.Output.all(kubeconfig, self.cpu_pool.id).apply(lambda parts: parts[0])
