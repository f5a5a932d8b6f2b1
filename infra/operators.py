"""The platform operators: Seldon Core, Pachyderm, the Kubeflow training operator and (on GKE) an ingress controller.

Each is a `helm.v3.Release` or manifests vendored in this repository: Release keeps Helm's own install order (CRDs
first), and `yaml.v2.ConfigFile` applies CRDs and namespaces before the objects that need them, so the CRDs exist
before the custom resources that depend on this component.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.cluster import PACHD_SERVICE_ACCOUNT, PACHYDERM_WORKER_SERVICE_ACCOUNT
from infra.labels import labels

SELDON_CHART_REPO = "https://storage.googleapis.com/seldon-charts"
PACHYDERM_CHART_REPO = "https://helm.pachyderm.com"
INGRESS_NGINX_CHART_REPO = "https://kubernetes.github.io/ingress-nginx"
# The training operator's standalone overlay, rendered and committed (see its PROVENANCE.md): a preview needs neither
# git nor GitHub, and every preview of the same commit applies the same objects. Relative to the project root, where
# Pulumi runs the program and the Kubernetes provider reads the file.
TRAINING_OPERATOR_MANIFESTS = {
    "v1.9.0": "infra/manifests/training-operator-v1.9.0/standalone.yaml",
}
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# What the `restricted` Pod Security level asks of a container, no more: the manager keeps its image's user (the
# chart's pod-level runAsUser 8888) and its writable root filesystem, which it may use for its webhook certificates.
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The proxy multiplexes pachd's gRPC API on its HTTP port; on minikube it is a NodePort at this port.
PACHD_NODE_PORT = 30080
# The Secret that holds Pachyderm's root token, under the key the chart reads (`root-token`, templates/pachd/
# deployment.yaml, AUTH_ROOT_TOKEN from `pachd.rootTokenSecretName`).
ROOT_TOKEN_SECRET = "pachyderm-root-token"
ROOT_TOKEN_KEY = "root-token"
# On LOCAL, pachd, pachw and the workers share this host folder (the chart appends `pachd`). Left empty, the pachd
# and pachw templates each draw their own `/var/pachyderm-<randAlphaNum 5>/` on every render.
LOCAL_STORAGE_HOST_PATH = "/var/pachyderm/"


@dataclass(frozen=True)
class ChartArgs:
    """A pinned chart: the Helm release's name, the chart, its repository and version."""

    release: str
    chart: str
    repo: str
    version: str


def chart_release(
    name: str,
    chart: ChartArgs,
    *,
    namespace: pulumi.Input[str],
    values: pulumi.Input[dict[str, Any]],
    opts: pulumi.ResourceOptions,
    timeout: int | None = None,
) -> k8s.helm.v3.Release:
    """Every operator's chart is installed the same way: pinned, from its own repository, atomically (a failed
    install rolls back instead of leaving half an operator)."""
    return k8s.helm.v3.Release(
        name,
        k8s.helm.v3.ReleaseArgs(
            name=chart.release,
            chart=chart.chart,
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
            namespace=namespace,
            values=values,
            atomic=True,
            timeout=timeout,
        ),
        opts=opts,
    )


def seldon_values() -> dict[str, Any]:
    """Usage metrics off, watch only the serving namespace, no Ambassador/Istio: an Ingress routes to the model.

    The operator runs in the serving namespace, which enforces `restricted`: the chart gives its manager pod only
    `runAsUser: 8888` (SeldonIO/seldon-core v1.17.1 helm-charts/seldon-core-operator/templates/
    deployment_seldon-controller-manager.yaml), and inserts `manager.containerSecurityContext` verbatim among the
    container's fields, so the value carries the whole `securityContext` the restricted level asks for.
    """
    return {
        "usageMetrics": {"enabled": False},
        "singleNamespace": True,
        "ambassador": {"enabled": False},
        "istio": {"enabled": False},
        "crd": {"create": True},
        "manager": {"containerSecurityContext": {"securityContext": dict(RESTRICTED_CONTAINER)}},
        # No executor values: the model's predictor runs without one (infra/serving.py says why).
    }


@dataclass(frozen=True)
class SeldonCoreArgs:
    namespace: pulumi.Input[str]
    version: str  # issue-titles:seldonChartVersion (default: infra.config.VERSIONS)


class SeldonCore(pulumi.ComponentResource):
    """Seldon Core v1 operator, watching only our namespace (no cluster-admin binding, unlike the tutorial)."""

    def __init__(self, name: str, args: SeldonCoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:SeldonCore", name, None, opts)
        self.release = chart_release(
            name,
            ChartArgs("seldon-core", "seldon-core-operator", SELDON_CHART_REPO, args.version),
            namespace=args.namespace,
            values=seldon_values(),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"status": self.release.status})


def pachyderm_values(
    cluster: str,
    registry_secret: str,
    bucket: str | None = None,
    storage_service_account: str | None = None,
    loki_deploy: bool = False,
    root_token_sha256: str | None = None,
) -> dict[str, Any]:
    """Helm values: local storage behind a NodePort on minikube, the GCS bucket via Workload Identity on GKE.

    Requests are set for every pod the chart leaves without them (etcd, pgbouncer; pachw inherits pachd's), so the
    resource budget (tests/infra/test_resource_budget.py) adds up what really gets scheduled.

    Auth stays on (the chart's default since 2.12: `pachd.activateAuth: true`) on both stacks, with the root token
    pinned in our own Secret (`pachd.rootTokenSecretName`) instead of the one templates/pachd/auth-secret.yaml draws
    with `randAlphaNum 32` at every render. `root_token_sha256` goes into pachd's pod annotations, so a new token in
    the stack config restarts pachd, which rotates its root token to it at start (src/server/auth/server/
    api_server.go, EnvBootstrap -> ActivateAuthEverywhere); the hash is of a random token and reveals nothing.
    """
    values: dict[str, Any] = {
        "deployTarget": "LOCAL",
        "console": {"enabled": False},
        # Pachyderm hands these to every pipeline worker, so workers can pull the private stage image.
        "global": {"imagePullSecrets": [registry_secret]},
        "pachd": {
            "metrics": {"enabled": False},
            # The chart's default (true) adds Loki and a promtail DaemonSet with hostPath volumes: off unless a
            # stack sets `issue-titles:lokiDeploy` (pachyderm/pachyderm 2.12.x etc/helm/pachyderm/Chart.yaml,
            # `condition: pachd.lokiDeploy`).
            "lokiDeploy": loki_deploy,
            # pachd reads pipeline logs from Loki while this is on (src/server/pps/server/api_server.go, GetLogs);
            # without Loki it reads the worker pods' logs through the Kubernetes API instead.
            "lokiLogging": loki_deploy,
            "activateAuth": True,
            "rootTokenSecretName": ROOT_TOKEN_SECRET,
            "serviceAccount": {"create": True, "name": PACHD_SERVICE_ACCOUNT},
            "worker": {"serviceAccount": {"create": True, "name": PACHYDERM_WORKER_SERVICE_ACCOUNT}},
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
            "defaultPipelineCPURequest": "1",
            "defaultPipelineMemoryRequest": "1Gi",
            # The storage sidecar's request for a pipeline that names none: 1 CPU otherwise (src/internal/
            # pachconfig/config.go SIDECAR_DEFAULT_CPU_REQUEST); our specs set sidecarResourceRequests anyway.
            "defaultSidecarCPURequest": "100m",
            "defaultSidecarMemoryRequest": "256Mi",
        },
        "etcd": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}},
        "pgbouncer": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}},
        "proxy": {
            "enabled": True,
            "service": {"type": "NodePort", "httpNodePort": PACHD_NODE_PORT},
        },
    }
    if root_token_sha256 is not None:
        values["pachd"]["annotations"] = {"issue-titles/root-token-sha256": root_token_sha256}
    if cluster != "gke":
        # pachd, pachw and the workers must share one folder, stable across upgrades (postgres keeps the metadata).
        values["pachd"]["storage"] = {"local": {"hostPath": LOCAL_STORAGE_HOST_PATH}}
    if cluster == "gke":
        values["deployTarget"] = "GOOGLE"
        # Off LOCAL the pachd and pachw templates fail without it: `required "storage URL required"
        # .Values.pachd.storage.storageURL` (etc/helm/pachyderm/templates/pachd/deployment.yaml and
        # pachw/deployment.yaml); upstream's etc/helm/examples/gcp-values.yaml sets it to gs://<bucket>.
        values["pachd"]["storage"] = {"storageURL": f"gs://{bucket}", "google": {"bucket": bucket}}
        identity = {"iam.gke.io/gcp-service-account": storage_service_account}
        values["pachd"]["serviceAccount"]["additionalAnnotations"] = dict(identity)
        # Pipeline workers' storage sidecars reach the bucket as pachyderm-worker: same identity (gcp-values.yaml
        # annotates both accounts).
        values["pachd"]["worker"]["serviceAccount"]["additionalAnnotations"] = dict(identity)
        values["proxy"]["service"] = {"type": "LoadBalancer"}
    return values


def pachd_network_policy_spec() -> dict[str, Any]:
    """Only pipeline workers, pachw and the proxy (the one door for pachctl and Pulumi) may reach pachd."""

    def peer(key: str, value: str) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": {key: value}}}

    return {
        "podSelector": {"matchLabels": {"app": "pachd"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    peer("component", "worker"),
                    peer("app", "pachw"),
                    peer("app", "pachyderm-proxy"),
                    peer("app", "pachd"),
                ]
            }
        ],
    }


@dataclass(frozen=True)
class PachydermArgs:
    namespace: pulumi.Input[str]
    version: str
    cluster: str
    registry_secret: pulumi.Input[str]
    pachd_address: str | None = None  # minikube: the NodePort address; GKE: None, read from the load balancer
    bucket: pulumi.Input[str] | None = None
    storage_service_account: pulumi.Input[str] | None = None
    loki_deploy: bool = False
    root_token: pulumi.Input[str] | None = None  # a secret; required: auth is on (pachyderm_values says why)


class Pachyderm(pulumi.ComponentResource):
    """Pachyderm from its official chart, version pinned, storage per stack, pachd fenced by a NetworkPolicy."""

    pachd_address: pulumi.Output[str]

    def __init__(self, name: str, args: PachydermArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:Pachyderm", name, None, opts)
        if args.root_token is None:
            raise pulumi.RunError("Pachyderm needs its root token (`issue-titles:pachdRootToken`): auth is on")
        token = pulumi.Output.secret(args.root_token)
        self.root_token_secret = k8s.core.v1.Secret(
            f"{name}-root-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ROOT_TOKEN_SECRET, namespace=args.namespace, labels=labels("pachyderm")
            ),
            type="Opaque",
            string_data={ROOT_TOKEN_KEY: token},
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Only a hash of the token enters the chart's values, so the values (and the release's diff) stay readable.
        token_sha256 = pulumi.Output.unsecret(token.apply(lambda t: hashlib.sha256(t.encode()).hexdigest()))
        values = pulumi.Output.all(args.registry_secret, args.bucket, args.storage_service_account, token_sha256).apply(
            lambda parts: pachyderm_values(
                args.cluster, parts[0], parts[1], parts[2], loki_deploy=args.loki_deploy, root_token_sha256=parts[3]
            )
        )
        self.release = chart_release(
            name,
            ChartArgs("pachyderm", "pachyderm", PACHYDERM_CHART_REPO, args.version),
            namespace=args.namespace,
            values=values,
            timeout=900,  # first pull of pachd, etcd and postgres images on a fresh node
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.root_token_secret]),
        )
        # pulumi-kubernetes types spec= only as its snake_case Args/ArgsDict forms; the provider takes the Kubernetes
        # JSON (camelCase) dict pachd_network_policy_spec renders, as it is.
        self.network_policy = k8s.networking.v1.NetworkPolicy(  # type: ignore[call-overload]
            f"{name}-pachd",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="pachd-from-pipelines-only", namespace=args.namespace, labels=labels("pachyderm")
            ),
            spec=pachd_network_policy_spec(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )
        if args.pachd_address is not None:
            self.pachd_address = pulumi.Output.from_input(args.pachd_address)
        else:
            proxy = load_balancer_address(
                f"{name}-proxy",
                "pachyderm-proxy",
                "issue-titles:pachdAddress",
                namespace=args.namespace,
                release=self.release,
                parent=self,
            )
            self.pachd_address = proxy.apply(lambda address: f"grpc://{address}:80")
        self.register_outputs({"pachd_address": self.pachd_address, "status": self.release.status})


def _external_address(status: Any, service: str, config_key: str) -> str:
    """The external IP (or host name) a cloud load balancer gave a Service."""
    ingress = (status.load_balancer.ingress or []) if status and status.load_balancer else []
    if not ingress:
        raise pulumi.RunError(
            f"{service} has no load-balancer address yet: wait for it (kubectl get svc {service}) "
            f"and run `pulumi up` again, or set `{config_key}`"
        )
    return ingress[0].ip or ingress[0].hostname


def load_balancer_address(
    name: str,
    service: str,
    config_key: str,
    *,
    namespace: pulumi.Input[str],
    release: k8s.helm.v3.Release,
    parent: pulumi.Resource,
) -> pulumi.Output[str]:
    """The external address of the LoadBalancer Service `service` that `release` installs, read once the release is
    up; `config_key` is the stack setting that names the address instead."""
    found = k8s.core.v1.Service.get(
        name,
        pulumi.Output.concat(namespace, "/", service),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[release]),
    )
    return found.status.apply(lambda status: _external_address(status, service, config_key))


@dataclass(frozen=True)
class TrainingOperatorArgs:
    ref: str  # issue-titles:trainingOperatorRef (default: infra.config.VERSIONS)


def training_operator_manifests(ref: str) -> str:
    """The committed rendering of the standalone overlay at `ref`, relative to the project root."""
    path = TRAINING_OPERATOR_MANIFESTS.get(ref)
    if path is None or not (PROJECT_ROOT / path).is_file():
        raise pulumi.RunError(
            f"no vendored training operator manifests for `issue-titles:trainingOperatorRef` {ref!r}: use one of "
            f"{', '.join(TRAINING_OPERATOR_MANIFESTS)}, or render the standalone overlay of {ref} as "
            f"infra/manifests/training-operator-v1.9.0/PROVENANCE.md says and list it in TRAINING_OPERATOR_MANIFESTS"
        )
    return path


class TrainingOperator(pulumi.ComponentResource):
    """Kubeflow training operator (TFJob CRD) from its standalone overlay, rendered and committed at a pinned tag."""

    def __init__(self, name: str, args: TrainingOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:TrainingOperator", name, None, opts)
        self.file = training_operator_manifests(args.ref)
        self.manifests = k8s.yaml.v2.ConfigFile(
            name,
            file=self.file,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"file": self.file})


@dataclass(frozen=True)
class IngressControllerArgs:
    version: str
    namespace: str = "ingress-nginx"


class IngressController(pulumi.ComponentResource):
    """ingress-nginx behind a cloud load balancer (minikube has it as the `ingress` addon instead)."""

    def __init__(self, name: str, args: IngressControllerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:IngressController", name, None, opts)
        # Our own Namespace resource, so `pulumi destroy` removes it (helm's --create-namespace would leave it).
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.namespace, labels=labels("ingress")),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.release = chart_release(
            name,
            ChartArgs("ingress-nginx", "ingress-nginx", INGRESS_NGINX_CHART_REPO, args.version),
            namespace=self.namespace.metadata.name,
            values={"controller": {"service": {"type": "LoadBalancer"}}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.address: pulumi.Output[str] = load_balancer_address(
            f"{name}-controller",
            "ingress-nginx-controller",
            "serving:ingressHost",
            namespace=args.namespace,
            release=self.release,
            parent=self,
        )
        self.register_outputs({"status": self.release.status, "address": self.address})
