"""The SeldonDeployment that serves the exported model image, and the way in to it.

The route is the tutorial's: `/seldon/<ns>/issue-summarization/api/v1.0/predictions` (or `/api/v0.1/...`) reaches the
model container, where MLServer answers Seldon's v1 message through the runtime's `custom_handler`s, unchanged.

No executor: the predictor carries `seldon.io/no-engine: "true"`. The serving namespace enforces the `restricted`
Pod Security level, and the executor container Seldon Core 1.17.1 injects gets at most `runAsUser` and
`allowPrivilegeEscalation: false` (SeldonIO/seldon-core v1.17.1 operator/controllers/seldondeployment_engine.go,
createEngineContainer), never `capabilities.drop: [ALL]`, so `restricted` would refuse every model pod. With the
annotation (operator/controllers/seldondeployment_controller.go, `noEngine`) the pod holds only the container below,
and the predictor Service `issue-summarization-default` points at its HTTP port.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.custom_resources import CustomResourceWithStatus, wait_annotations
from infra.labels import labels
from infra.pods import TMP_MOUNT, TMP_VOLUME, container_security_context, pod_security_context

MODEL_NAME = "issue-summarization"
PREDICTOR = "default"
SERVER_PORT = 9000  # MLServer HTTP inside the model container, and the predictor Service's port (no executor)
NO_ENGINE = "seldon.io/no-engine"
# Ready when Seldon says the deployment is Available (status.state: Creating -> Available | Failed); a model image
# that cannot be pulled or never gets ready fails `pulumi up` after the timeout instead of passing silently.
WAIT_FOR = "jsonpath={.status.state}=Available"
TIMEOUT_SECONDS = 900
SERVICE_ACCOUNT = "issue-summarization"
TUTORIAL_BODY = (
    "I am trying to run the tutorial but the build fails with a missing dependency. Steps to reproduce: clone the "
    "repo, run make, see the error about protobuf."
)
RESOURCES = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}


def _probe(path: str, initial_delay: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": SERVER_PORT, "scheme": "HTTP"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 6,
    }


def seldon_deployment_spec(image: str, image_pull_secret: str, replicas: int) -> dict[str, Any]:
    """Two replicas of the model container, answering Seldon's v1 protocol itself (no executor, see above)."""
    container = {
        "name": MODEL_NAME,
        "image": image,
        "ports": [{"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"}],
        # MLServer's own V2 health: ready once the model is loaded, live while the process answers.
        "readinessProbe": _probe("/v2/health/ready", 10),
        "livenessProbe": _probe("/v2/health/live", 30),
        "resources": RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": [dict(TMP_MOUNT)],
    }
    return {
        "name": MODEL_NAME,
        "protocol": "seldon",  # Seldon's v1 message, which MLServer's custom handlers answer unchanged
        "predictors": [
            {
                "name": PREDICTOR,
                "replicas": replicas,
                "annotations": {NO_ENGINE: "true"},
                "graph": {
                    "name": MODEL_NAME,  # must match the container name
                    "type": "MODEL",
                    "endpoint": {"type": "REST", "httpPort": SERVER_PORT},
                    "children": [],
                },
                "componentSpecs": [
                    {
                        "spec": {
                            "serviceAccountName": SERVICE_ACCOUNT,
                            "automountServiceAccountToken": False,
                            "securityContext": pod_security_context(),
                            "containers": [container],
                            "imagePullSecrets": [{"name": image_pull_secret}],
                            "volumes": [dict(TMP_VOLUME)],
                        }
                    }
                ],
            }
        ],
    }


def model_network_policy_spec(gateway_namespace: str) -> dict[str, Any]:
    """Only the ingress gateway may reach the model pods, and only on the model's HTTP port."""
    return {
        "podSelector": {"matchLabels": {"seldon-deployment-id": MODEL_NAME}},
        "policyTypes": ["Ingress"],
        "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}}}],
            "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
        }],
    }


def ingress_spec(namespace: str) -> dict[str, Any]:
    """`/seldon/<ns>/issue-summarization/<rest>` -> the model's `/<rest>`: the tutorial's URL, unchanged."""
    return {
        "ingressClassName": "nginx",
        "rules": [{"http": {"paths": [{
            "path": f"/seldon/{namespace}/{MODEL_NAME}(/|$)(.*)",
            "pathType": "ImplementationSpecific",
            "backend": {"service": {"name": f"{MODEL_NAME}-{PREDICTOR}", "port": {"number": SERVER_PORT}}},
        }]}}],
    }


def curl_command(url: str) -> str:
    body = json.dumps({"data": {"ndarray": [[TUTORIAL_BODY]]}})
    return f"curl -s -X POST -H 'Content-Type: application/json' -d '{body}' {url}"


def serving_status(image: str, replicas: int, status: Any) -> str:
    """The SeldonDeployment's own account of itself (status.state, and its description when not Available)."""
    if not status:
        return f"{image}: no status reported yet"
    state = status.get("state") or "Unknown"
    replicas_ready = status.get("replicas")
    line = f"{state}: {image}"
    if replicas_ready is not None:
        line += f" ({replicas_ready}/{replicas} replicas)"
    if state != "Available" and status.get("description"):
        line += f": {status['description']}"
    return line


@dataclass(frozen=True)
class ModelServingArgs:
    namespace: str
    image_repo: str
    model_tag: str | None  # the export job ID; None means "nothing trained yet"
    image_pull_secret: pulumi.Input[str]
    replicas: int = 2
    ingress: str = "nginx"
    ingress_host: pulumi.Input[str] = "localhost"
    gateway_namespace: str = "ingress-nginx"


class ModelServing(pulumi.ComponentResource):
    """The model behind Seldon; not created until `serving:modelTag` names an exported image (the program says so)."""

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:ModelServing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.deployment: k8s.apiextensions.CustomResource | None = None
        if args.ingress == "nginx":
            self.prediction_url = pulumi.Output.concat(
                "http://", args.ingress_host, f"/seldon/{args.namespace}/{MODEL_NAME}/api/v1.0/predictions")
        else:  # `kubectl port-forward svc/issue-summarization-default 9000`
            self.prediction_url = pulumi.Output.from_input(f"http://localhost:{SERVER_PORT}/api/v1.0/predictions")
        if args.model_tag is None:
            self.status = (
                "not deployed: no model yet. Put data in raw_data, wait for the export job, then "
                "`pulumi config set serving:modelTag <export job ID>` (the tag in export's image.json) and `pulumi up`"
            )
        else:
            image = f"{args.image_repo}:{args.model_tag}"
            # Its own identity with no API access and no token: the model never talks to Kubernetes.
            self.service_account = k8s.core.v1.ServiceAccount(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVICE_ACCOUNT, namespace=args.namespace,
                                                    labels=labels("serving")),
                automount_service_account_token=False,
                image_pull_secrets=[k8s.core.v1.LocalObjectReferenceArgs(name=args.image_pull_secret)],
                opts=child,
            )
            self.deployment = CustomResourceWithStatus(
                name,
                api_version="machinelearning.seldon.io/v1",
                kind="SeldonDeployment",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MODEL_NAME, namespace=args.namespace,
                                                    labels=labels("serving"),
                                                    annotations=wait_annotations(WAIT_FOR, TIMEOUT_SECONDS)),
                spec=pulumi.Output.from_input(args.image_pull_secret).apply(
                    lambda secret: seldon_deployment_spec(image, secret, args.replicas)
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account]),
            )
            self.network_policy = k8s.networking.v1.NetworkPolicy(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{MODEL_NAME}-from-gateway-only", namespace=args.namespace,
                                                    labels=labels("serving")),
                spec=model_network_policy_spec(args.gateway_namespace),
                opts=child,
            )
            if args.ingress == "nginx":
                self.ingress = k8s.networking.v1.Ingress(
                    name,
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=MODEL_NAME, namespace=args.namespace, labels=labels("serving"),
                        annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                                     "nginx.ingress.kubernetes.io/use-regex": "true",
                                     "nginx.ingress.kubernetes.io/proxy-body-size": "2m"},
                    ),
                    spec=ingress_spec(args.namespace),
                    opts=child,
                )
            self.status = self.deployment.status.apply(
                lambda status: serving_status(image, args.replicas, status))
        self.curl = self.prediction_url.apply(curl_command)
        self.register_outputs({"status": self.status, "prediction_url": self.prediction_url})
