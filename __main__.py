"""The issue-titles platform, one stack at a time: read the config once, then wire the components.

    cluster ─┬─ namespace (Pachyderm) ─┬─ registry secret ─────────────────────────────┐
             │                         ├─ stage image check (TFJob) ◄─ training operator │
             │                         └─ Pachyderm ─┐                                   │
             │  stage image ─────────────────────────┴─────────────── repos + pipelines ◄┘
             └─ serving namespace (restricted) ─┬─ registry secret ─┐
                                                └─ Seldon Core ─────┴── model serving

Two namespaces, because their Pod Security levels differ: Pachyderm on minikube mounts host paths (`privileged`;
`baseline` on GKE), while Seldon and the model run at `restricted` (infra/platform.py says why).
"""

from dataclasses import replace

import pulumi

from infra.cluster import ClusterAccess, ClusterAccessArgs
from infra.config import load_config
from infra.image_check import StageImageCheck, StageImageCheckArgs
from infra.images import StageImage, StageImageArgs
from infra.operators import (
    IngressController,
    IngressControllerArgs,
    Pachyderm,
    PachydermArgs,
    SeldonCore,
    SeldonCoreArgs,
    TrainingOperator,
    TrainingOperatorArgs,
)
from infra.pachyderm_pipelines import PachydermPipelines, PachydermPipelinesArgs
from infra.platform import (
    PlatformNamespace,
    PlatformNamespaceArgs,
    RegistrySecret,
    RegistrySecretArgs,
    pachyderm_pod_security,
)
from infra.rollout import OUTPUT as SERVING_MODELS
from infra.rollout import rollout_models
from infra.serving import ModelServing, ModelServingArgs
from infra.training import TrainerAccess, TrainerAccessArgs
from pipelines.specs import TRAINER_SERVICE_ACCOUNT

cfg = load_config()
rollout = cfg.serving.rollout

tfjob_training = cfg.pipeline.trainer == "tfjob"  # the train pipeline's worker creates a TFJob per job
cluster = ClusterAccess(
    "cluster",
    ClusterAccessArgs(
        cfg.cluster,
        cfg.namespace,
        cfg.kube_context,
        cfg.gke,
        bucket_accounts=(TRAINER_SERVICE_ACCOUNT,) if tfjob_training else (),
    ),
)
on_cluster = pulumi.ResourceOptions(provider=cluster.provider)

namespace = PlatformNamespace(
    "namespace", PlatformNamespaceArgs(name=cfg.namespace, pod_security=pachyderm_pod_security(cfg.cluster)), on_cluster
)
in_namespace = pulumi.ResourceOptions(provider=cluster.provider, depends_on=[namespace])
# Seldon Core 1.17.1 with singleNamespace only validates SeldonDeployments in namespaces labelled
# seldon.io/controller-id=<its own namespace> (helm-charts/seldon-core-operator/templates/webhook.yaml).
serving_namespace = PlatformNamespace(
    "serving-namespace",
    PlatformNamespaceArgs(
        name=cfg.serving.namespace,
        pod_security="restricted",
        component="serving",
        extra_labels={"seldon.io/controller-id": cfg.serving.namespace},
    ),
    on_cluster,
)
in_serving_namespace = pulumi.ResourceOptions(provider=cluster.provider, depends_on=[serving_namespace])

registry = RegistrySecret("registry", RegistrySecretArgs(namespace.name, cfg.registry), in_namespace)
serving_registry = RegistrySecret(
    "serving-registry", RegistrySecretArgs(serving_namespace.name, cfg.registry), in_serving_namespace
)

training_operator = TrainingOperator("training-operator", TrainingOperatorArgs(cfg.training_operator_ref), on_cluster)

# singleNamespace: the operator watches the namespace it is installed in, so it goes with the model.
seldon = SeldonCore(
    "seldon-core", SeldonCoreArgs(serving_namespace.name, cfg.seldon_chart_version), in_serving_namespace
)

pachyderm = Pachyderm(
    "pachyderm",
    PachydermArgs(
        namespace=namespace.name,
        version=cfg.pachyderm_chart_version,
        cluster=cfg.cluster,
        registry_secret=registry.secret_name,
        pachd_address=cfg.pachd_address,
        bucket=cluster.bucket_name,
        storage_service_account=cluster.storage_service_account,
        loki_deploy=cfg.loki_deploy,
        root_token=cfg.pachd_root_token,
    ),
    in_namespace,
)

stage_image = StageImage(
    "stages",
    StageImageArgs(
        repository=cfg.stage_image_repo,
        gpu=cfg.pipeline.gpus > 0,
        registry=cfg.registry,
    ),
)

image_check = StageImageCheck(
    "stage-image-check",
    StageImageCheckArgs(
        namespace=cfg.namespace,
        image=stage_image.image_ref,
        image_pull_secret=registry.secret_name,
        gpus=cfg.pipeline.gpus,
    ),
    pulumi.ResourceOptions(provider=cluster.provider, depends_on=[namespace, training_operator, registry]),
)  # TFJob CRD first

# Only the train pipeline's account may manage TFJobs, in this namespace only (a Role); made after Pachyderm, whose
# chart defines the worker Role the account is also bound to.
trainer_access = (
    TrainerAccess(
        "trainer",
        TrainerAccessArgs(namespace=cfg.namespace, storage_service_account=cluster.storage_service_account),
        pulumi.ResourceOptions(provider=cluster.provider, depends_on=[namespace, pachyderm]),
    )
    if tfjob_training
    else None
)

pipelines = PachydermPipelines(
    "pipelines",
    PachydermPipelinesArgs(
        pachd_address=pachyderm.pachd_address,
        auth_token=cfg.pachd_root_token,
        # load_config validated the settings; the pipelines run the image built above, by digest
        settings=replace(cfg.pipeline, stage_image=stage_image.image_ref),
    ),
    pulumi.ResourceOptions(
        depends_on=[pachyderm, stage_image, registry, *([training_operator, trainer_access] if trainer_access else [])]
    ),
)

ingress_host: pulumi.Input[str] = cfg.serving.ingress_host
ingress_after: list[pulumi.Resource] = []
if cfg.on_gke and cfg.serving.ingress == "nginx":  # minikube has ingress-nginx as an addon
    ingress_controller = IngressController(
        "ingress", IngressControllerArgs(cfg.ingress_controller_chart_version), on_cluster
    )
    ingress_host = ingress_controller.address
    # Its validating webhook checks every Ingress: the model's Ingress waits for the release that serves it.
    ingress_after = [ingress_controller.release]

serving = ModelServing(
    "serving",
    ModelServingArgs(
        namespace=cfg.serving.namespace,
        image_pull_secret=serving_registry.secret_name,
        replicas=cfg.serving.replicas,
        ingress=cfg.serving.ingress,
        ingress_host=ingress_host,
        gateway_namespace=cfg.serving.gateway_namespace,
        # pinned job IDs, or the newest export that passed the gate (read from pachd now, so the preview shows it)
        models=rollout_models(rollout, cfg.serving.image_repo, pachyderm.pachd_address, auth_token=cfg.pachd_root_token)
        if rollout.model
        else None,
        canary=rollout.canary is not None,
        ingress_after=ingress_after,
        metrics_scrape=cfg.serving.metrics_scrape,
        monitoring_namespace=cfg.serving.monitoring_namespace,
    ),
    pulumi.ResourceOptions(provider=cluster.provider, depends_on=[serving_namespace, seldon, serving_registry]),
)  # CRD and webhook first

pulumi.export("namespace", namespace.name)
pulumi.export("serving_namespace", serving_namespace.name)
pulumi.export("cluster", cluster.description)
pulumi.export("pachd_address", pachyderm.pachd_address)
pulumi.export("pachctl", pachyderm.pachd_address.apply(lambda address: f"pachctl connect {address}"))
# Pachyderm's auth is on: pachctl logs in with the root token, read from stdin (docs/cluster.md, section 5)
pulumi.export("pachctl_login", "pulumi config get issue-titles:pachdRootToken | pachctl auth use-auth-token")
pulumi.export("stage_image", stage_image.image_ref)
pulumi.export("stage_image_check", image_check.result)  # a failed check fails `pulumi up` here, naming the image
pulumi.export("pipelines", pipelines.pipelines)
pulumi.export("serving_status", serving.status)
pulumi.export(SERVING_MODELS, serving.models)  # image, share and provenance per predictor; read back if pachd is down
pulumi.export("serving_traffic", serving.traffic)  # which model serves what share
pulumi.export("prediction_url", serving.prediction_url)
pulumi.export("curl", serving.curl)
