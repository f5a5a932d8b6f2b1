"""The SeldonDeployment that serves the exported model image, and the way in to it.

The route is the tutorial's: `/seldon/<ns>/issue-summarization/api/v1.0/predictions` (or `/api/v0.1/...`) reaches the
model container, where MLServer answers Seldon's v1 message through the runtime's `custom_handler`s, unchanged.

No executor: the predictor carries `seldon.io/no-engine: "true"`. The serving namespace enforces the `restricted`
Pod Security level, and the executor container Seldon Core 1.17.1 injects gets at most `runAsUser` and
`allowPrivilegeEscalation: false` (SeldonIO/seldon-core v1.17.1 operator/controllers/seldondeployment_engine.go,
createEngineContainer), never `capabilities.drop: [ALL]`, so `restricted` would refuse every model pod. With the
annotation (operator/controllers/seldondeployment_controller.go, `noEngine`) the pod holds only the container below,
and the predictor Service `issue-summarization-default` points at its HTTP port.

What no-engine gives up: the executor's own Prometheus metrics (`seldon_api_executor_server_requests_seconds_*`,
`seldon_api_executor_client_requests_seconds_*`) and its request logging. What replaces them: MLServer's metrics
server in the model container (port `metrics`, 8082: `rest_server_requests_total` and `_duration_seconds` per
route, `model_infer_request_success_total` / `_failure_total` / `_duration` per model and version = the export job
ID, the batcher's queue histograms), scraped through a PodMonitor or the conventional `prometheus.io/*` pod
annotations (`serving:metricsScrape`), and the server's own access log line per request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.custom_resources import CustomResourceWithStatus, awaited_metadata
from infra.labels import labels
from infra.pods import TMP_MOUNT, TMP_VOLUME, container_security_context, pod_security_context
from pipelines.contract import METRICS_PORT, MODEL_NAME, SERVING_PORT

PREDICTOR = "default"
CANARY_PREDICTOR = "canary"
CANARY_REPLICAS = 1
# MLServer HTTP inside the model container is also the predictor Service's port (no executor); METRICS_PORT is its
# Prometheus server (the image's `--metrics-port`). Both come with the model name from the bundle contract.
SERVER_PORT = SERVING_PORT
METRICS_PATH = "/metrics"
# How Prometheus finds the model pods: a PodMonitor (needs the Prometheus operator's CRD, e.g. kube-prometheus-stack),
# the conventional `prometheus.io/*` pod annotations (a Prometheus with the usual kubernetes-pods scrape job), or not.
SCRAPE_KINDS = ("annotations", "podmonitor", "none")
NO_ENGINE = "seldon.io/no-engine"
# How long `pulumi up` waits for Seldon to roll out a spec (see `wait_for`): a model image that cannot be pulled or
# never gets ready fails `pulumi up` after the timeout instead of passing silently.
TIMEOUT_SECONDS = 900
SERVICE_ACCOUNT = MODEL_NAME
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


def scrape_annotations() -> dict[str, str]:
    """The conventional annotations a Prometheus `kubernetes-pods` scrape job reads."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT), "prometheus.io/path": METRICS_PATH}


def predictor_spec(
    name: str,
    image: str,
    image_pull_secret: str,
    replicas: int,
    traffic: int | None = None,
    scrape: str = "annotations",
) -> dict[str, Any]:
    """One predictor: the model container, answering Seldon's v1 protocol itself (no executor, see above);
    `traffic` only when it shares the requests with another predictor. The container declares its metrics port;
    with `scrape="annotations"` the pod carries the `prometheus.io/*` annotations."""
    container = {
        "name": MODEL_NAME,
        "image": image,
        "ports": [
            {"name": "http", "containerPort": SERVER_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # MLServer's own V2 health: ready once the model is loaded, live while the process answers.
        "readinessProbe": _probe("/v2/health/ready", 10),
        "livenessProbe": _probe("/v2/health/live", 30),
        "resources": RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": [dict(TMP_MOUNT)],
    }
    pod = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "imagePullSecrets": [{"name": image_pull_secret}],
        "volumes": [dict(TMP_VOLUME)],
    }
    predictor: dict[str, Any] = {
        "name": name,
        "replicas": replicas,
        "annotations": {NO_ENGINE: "true"},
        "graph": {
            "name": MODEL_NAME,  # must match the container name
            "type": "MODEL",
            "endpoint": {"type": "REST", "httpPort": SERVER_PORT},
            "children": [],
        },
        # metadata.name names the Deployment Seldon makes of this pod spec (`rollout_name` says why it is a hash)
        "componentSpecs": [{"metadata": {"name": rollout_name(pod)}, "spec": pod}],
    }
    if scrape == "annotations":
        predictor["componentSpecs"][0]["metadata"]["annotations"] = scrape_annotations()
    if traffic is not None:
        predictor["traffic"] = traffic
    return predictor


def rollout_name(pod: dict[str, Any]) -> str:
    """`m-<10 hex of the pod spec>`: the componentSpec's metadata.name, so each new pod spec gets a Deployment of its
    own, `<deployment>-<predictor>-0-m-<hash>` (SeldonIO/seldon-core v1.17.1 operator/apis/machinelearning.seldon.io/
    v1/seldondeployment_types.go, GetDeploymentName), and its own key in `status.deploymentStatus`.

    That key is what `pulumi up` waits for (`wait_for`): it is absent from the status the previous spec left, so a
    stale `Available` cannot end the wait. Seldon keeps serving from the old Deployment until the new one is ready:
    both carry the predictor's `seldon-app` label, which its Service selects, and the old one is deleted only once
    every Deployment of the new spec is ready (operator/controllers/seldondeployment_controller.go,
    completeServiceCreation).
    """
    return "m-" + hashlib.sha256(json.dumps(pod, sort_keys=True).encode()).hexdigest()[:10]


def expected_deployments(spec: dict[str, Any]) -> dict[str, int]:
    """The Deployment Seldon 1.17.1 creates for each predictor of `spec` (one componentSpec each), and its replicas."""
    return {
        f"{spec['name']}-{p['name']}-0-{p['componentSpecs'][0]['metadata']['name']}": int(p["replicas"])
        for p in spec["predictors"]
    }


def wait_for(spec: dict[str, Any]) -> str:
    """`pulumi.com/waitFor` for this spec: Seldon says Available *and* lists every Deployment of this very spec with
    all its replicas available.

    `jsonpath={.status.state}=Available` alone ends an update at once: pulumi-kubernetes ignores a stale status only
    when the object carries `status.observedGeneration` (pulumi/pulumi-kubernetes provider/pkg/await/condition/
    jsonpath.go), which Seldon 1.17.1 never sets, and Seldon rewrites `state` only after it reconciles the new spec.
    The Deployment names come from `rollout_name`, so they are new with each new pod spec. One RFC 9535 filter at
    the root (the only member with these fields is `status`) checks them all; pulumi-kubernetes compares the first
    value selected, `status.state`, and keeps waiting while nothing is selected.
    """
    checks = ["@.state=='Available'"] + [
        f"@.deploymentStatus['{name}'].availableReplicas=={replicas}"
        for name, replicas in expected_deployments(spec).items()
    ]
    return "jsonpath={$[?" + " && ".join(checks) + "].state}=Available"


def seldon_deployment_spec(
    image: str,
    image_pull_secret: str,
    replicas: int,
    canary: tuple[str, int] | None = None,
    scrape: str = "annotations",
) -> dict[str, Any]:
    """Two replicas of the model container, answering Seldon's v1 protocol itself (no executor, see above).

    With `canary` (image, percent) a second predictor `canary` (one replica) takes that share. Seldon's admission
    webhook wants the shares of several predictors to sum to 100 (checkTraffic in
    operator/apis/machinelearning.seldon.io/v1/seldondeployment_webhook.go, SeldonIO/seldon-core v1.17.1); the
    operator routes by `traffic` only through Istio or Ambassador, so with ingress-nginx the canary Ingress carries
    the same share (`canary_ingress_annotations`).
    """
    if canary is None:
        predictors = [predictor_spec(PREDICTOR, image, image_pull_secret, replicas, scrape=scrape)]
    else:
        canary_image, share = canary
        predictors = [
            predictor_spec(PREDICTOR, image, image_pull_secret, replicas, 100 - share, scrape),
            predictor_spec(CANARY_PREDICTOR, canary_image, image_pull_secret, CANARY_REPLICAS, share, scrape),
        ]
    return {
        "name": MODEL_NAME,
        "protocol": "seldon",  # Seldon's v1 message, which MLServer's custom handlers answer unchanged
        "predictors": predictors,
    }


def spec_for_models(
    models: list[dict[str, Any]], image_pull_secret: str, replicas: int, scrape: str = "annotations"
) -> dict[str, Any]:
    """The SeldonDeployment spec for infra.rollout's predictor list (main first, then an optional canary)."""
    main = models[0]
    canary = (models[1]["image"], int(models[1]["traffic"])) if len(models) > 1 else None
    return seldon_deployment_spec(main["image"], image_pull_secret, replicas, canary, scrape)


def model_network_policy_spec(gateway_namespace: str, monitoring_namespace: str | None = None) -> dict[str, Any]:
    """Only the ingress gateway may reach the model pods, and only on the model's HTTP port; with
    `monitoring_namespace`, Prometheus there may reach the metrics port (and only that)."""
    rules: list[dict[str, Any]] = [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}}}],
            "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
        }
    ]
    if monitoring_namespace is not None:
        rules.append(
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitoring_namespace}}}],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            }
        )
    return {
        "podSelector": {"matchLabels": {"seldon-deployment-id": MODEL_NAME}},
        "policyTypes": ["Ingress"],
        "ingress": rules,
    }


def pod_monitor_spec(namespace: str) -> dict[str, Any]:
    """A Prometheus operator PodMonitor for every model pod (main and canary predictors) on its `metrics` port."""
    return {
        "selector": {"matchLabels": {"seldon-deployment-id": MODEL_NAME}},
        "namespaceSelector": {"matchNames": [namespace]},
        "podMetricsEndpoints": [{"port": "metrics", "path": METRICS_PATH, "interval": "30s"}],
    }


def ingress_spec(namespace: str, predictor: str = PREDICTOR) -> dict[str, Any]:
    """`/seldon/<ns>/issue-summarization/<rest>` -> the model's `/<rest>`: the tutorial's URL, unchanged."""
    return {
        "ingressClassName": "nginx",
        "rules": [
            {
                "http": {
                    "paths": [
                        {
                            "path": f"/seldon/{namespace}/{MODEL_NAME}(/|$)(.*)",
                            "pathType": "ImplementationSpecific",
                            "backend": {
                                "service": {"name": f"{MODEL_NAME}-{predictor}", "port": {"number": SERVER_PORT}}
                            },
                        }
                    ]
                }
            }
        ],
    }


def canary_ingress_annotations(share: int) -> dict[str, str]:
    """ingress-nginx sends `share` percent of the requests on the main Ingress's path to the canary Ingress's backend
    (docs/user-guide/nginx-configuration/annotations.md#canary, kubernetes/ingress-nginx); a canary Ingress inherits
    the main one's other annotations (the rewrite). Weight 0 while no canary predictor exists."""
    return {"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": str(share)}


def traffic_table(models: list[dict[str, Any]]) -> dict[str, str]:
    """predictor -> "90% <image> (job <id>, <source>)": what `pulumi stack output serving_traffic` shows."""
    return {m["predictor"]: f"{m['traffic']}% {m['image']} (job {m['job_id']}, {m['source']})" for m in models}


def curl_command(url: str) -> str:
    body = json.dumps({"data": {"ndarray": [[TUTORIAL_BODY]]}})
    return f"curl -s -X POST -H 'Content-Type: application/json' -d '{body}' {url}"


def serving_status(image: str, replicas: int, status: Any, deployments: dict[str, int] | None = None) -> str:
    """The SeldonDeployment's own account of itself (status.state, and its description when not Available).

    With `deployments` (`expected_deployments` of the spec), `Available` counts only when the status lists every
    one of them with all its replicas available: otherwise the status still describes the previous spec."""
    if not status:
        return f"{image}: no status reported yet"
    state = status.get("state") or "Unknown"
    if deployments is not None and state == "Available":
        listed = status.get("deploymentStatus") or {}
        behind = sorted(
            name
            for name, count in deployments.items()
            if int((listed.get(name) or {}).get("availableReplicas") or 0) < count
        )
        if behind:
            return (
                f"Rolling out: {image}: Seldon has not reported this spec available yet (waiting for "
                f"{', '.join(behind)}; its status still describes the previous spec)"
            )
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
    image_pull_secret: pulumi.Input[str]
    replicas: int = 2
    ingress: str = "nginx"
    ingress_host: pulumi.Input[str] = "localhost"
    gateway_namespace: str = "ingress-nginx"
    # infra.rollout's predictor list (main first, then an optional canary); None: no `serving:modelTag` yet, so
    # nothing is served (the status says how to start).
    models: pulumi.Input[list[dict[str, Any]]] | None = None
    canary: bool = False  # a canary is configured: declare the canary Ingress (weight 0 while it is promoted)
    # What the Ingresses wait for besides the model (GKE: the ingress-nginx release, whose webhook checks them).
    ingress_after: list[pulumi.Resource] = field(default_factory=list)
    metrics_scrape: str = "annotations"  # one of SCRAPE_KINDS
    monitoring_namespace: str = "monitoring"  # where Prometheus runs: the NetworkPolicy lets it reach the metrics port


def rollout_status(models: list[dict[str, Any]], replicas: int) -> str:
    """What serves what share: `<image>` alone, or `<image> 90% + canary <image> 10%`."""
    if len(models) == 1:
        return models[0]["image"]
    main, canary = models[0], models[1]
    return f"{main['image']} {main['traffic']}% + canary {canary['image']} {canary['traffic']}%"


class ModelServing(pulumi.ComponentResource):
    """The model behind Seldon; not created until `serving:modelTag` names an exported image (the program says so)."""

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:ModelServing", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.deployment: k8s.apiextensions.CustomResource | None = None
        self.models: pulumi.Output[list[dict[str, Any]]] = pulumi.Output.from_input([])
        if args.ingress == "nginx":
            self.prediction_url = pulumi.Output.concat(
                "http://", args.ingress_host, f"/seldon/{args.namespace}/{MODEL_NAME}/api/v1.0/predictions"
            )
        else:  # `kubectl port-forward svc/issue-summarization-default 9000`
            self.prediction_url = pulumi.Output.from_input(f"http://localhost:{SERVER_PORT}/api/v1.0/predictions")
        if args.models is None:
            self.status: str | pulumi.Output[str] = (
                "not deployed: no model yet. Put data in raw_data, wait for the export job, then "
                "`pulumi config set serving:modelTag <export job ID>` (the tag in export's image.json) and `pulumi up`"
            )
        else:
            models = pulumi.Output.from_input(args.models)
            # Its own identity with no API access and no token: the model never talks to Kubernetes.
            self.service_account = k8s.core.v1.ServiceAccount(
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=SERVICE_ACCOUNT, namespace=args.namespace, labels=labels("serving")
                ),
                automount_service_account_token=False,
                image_pull_secrets=[k8s.core.v1.LocalObjectReferenceArgs(name=args.image_pull_secret)],
                opts=child,
            )
            spec = pulumi.Output.all(args.image_pull_secret, models).apply(
                lambda values: spec_for_models(values[1], values[0], args.replicas, args.metrics_scrape)
            )
            self.deployment = CustomResourceWithStatus(
                name,
                api_version="machinelearning.seldon.io/v1",
                kind="SeldonDeployment",
                metadata=awaited_metadata(MODEL_NAME, args.namespace, "serving", spec.apply(wait_for), TIMEOUT_SECONDS),
                spec=spec,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account]),
            )
            # pulumi-kubernetes types spec= (and rules=, role_ref=, subjects=) only as its snake_case Args/ArgsDict
            # forms; the provider takes the Kubernetes JSON (camelCase) dicts this module renders, as they are.
            self.network_policy = k8s.networking.v1.NetworkPolicy(  # type: ignore[call-overload]  # camelCase JSON spec, see above
                name,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{MODEL_NAME}-from-gateway-only", namespace=args.namespace, labels=labels("serving")
                ),
                spec=model_network_policy_spec(
                    args.gateway_namespace, None if args.metrics_scrape == "none" else args.monitoring_namespace
                ),
                opts=child,
            )
            if args.metrics_scrape == "podmonitor":
                self.pod_monitor = k8s.apiextensions.CustomResource(
                    name,
                    api_version="monitoring.coreos.com/v1",
                    kind="PodMonitor",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=MODEL_NAME, namespace=args.namespace, labels=labels("serving")
                    ),
                    spec=pod_monitor_spec(args.namespace),
                    opts=child,
                )
            if args.ingress == "nginx":
                self.ingress = k8s.networking.v1.Ingress(  # type: ignore[call-overload]  # camelCase JSON spec, see above
                    name,
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=MODEL_NAME,
                        namespace=args.namespace,
                        labels=labels("serving"),
                        annotations={
                            "nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                            "nginx.ingress.kubernetes.io/use-regex": "true",
                            "nginx.ingress.kubernetes.io/proxy-body-size": "2m",
                        },
                    ),
                    spec=ingress_spec(args.namespace),
                    # Seldon creates the Service it routes to; the deployment's wait ends after that.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.ingress_after, self.deployment]),
                )
                if args.canary:
                    self.canary_ingress = k8s.networking.v1.Ingress(
                        f"{name}-canary",
                        metadata=k8s.meta.v1.ObjectMetaArgs(
                            name=f"{MODEL_NAME}-{CANARY_PREDICTOR}",
                            namespace=args.namespace,
                            labels=labels("serving"),
                            annotations=models.apply(
                                lambda m: canary_ingress_annotations(int(m[1]["traffic"]) if len(m) > 1 else 0)
                            ),
                        ),
                        spec=models.apply(  # camelCase JSON spec, see above
                            lambda m: ingress_spec(  # type: ignore[arg-type,return-value]
                                args.namespace, CANARY_PREDICTOR if len(m) > 1 else PREDICTOR
                            )
                        ),
                        # after the SeldonDeployment's wait, which ends only once Seldon reports this spec's
                        # Deployments available, after it created the canary predictor's Service
                        opts=pulumi.ResourceOptions(
                            parent=self, depends_on=[*args.ingress_after, self.ingress, self.deployment]
                        ),
                    )
            self.models = models
            self.status = pulumi.Output.all(models, self.deployment.status, spec).apply(
                lambda values: serving_status(
                    rollout_status(values[0], args.replicas),
                    args.replicas + (CANARY_REPLICAS if len(values[0]) > 1 else 0),
                    values[1],
                    expected_deployments(values[2]),
                )
            )
        self.curl = self.prediction_url.apply(curl_command)
        self.traffic = self.models.apply(traffic_table)
        self.register_outputs({"status": self.status, "prediction_url": self.prediction_url, "models": self.models})
