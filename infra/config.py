"""Stack configuration, read once and validated before any resource is declared.

Every error names the config key and the command that fixes it, so `pulumi preview` stops before any resource
changes (a ConfigError is a `pulumi.RunError`: Pulumi prints the message, not a Python traceback).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import pulumi

from infra.pachd import ADDRESS_EXAMPLE, address_problem
from pipelines.settings import ARCHITECTURES, TRAINERS
from pipelines.settings import K8S_NAME as _DNS1123_LABEL

PROJECT = "issue-titles"
CLUSTER_KINDS = ("minikube", "gke")
INGRESS_KINDS = ("nginx", "none")
_IMAGE_REPO = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")
# Namespaces Kubernetes itself owns: a stack that declared one would own it, and `pulumi destroy` would delete it.
RESERVED_NAMESPACES = ("default",)
RESERVED_NAMESPACE_PREFIX = "kube-"
# Model server replicas: each loads the model into its own process (about 1 GiB); more than this is a typo.
MAX_SERVING_REPLICAS = 50
# One label of a host name (RFC 1123).
_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_IPV4 = re.compile(r"^[0-9]+(\.[0-9]+){3}$")

# Every key a stack may set, by namespace. Anything else is a typo and stops the preview.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    PROJECT: (
        "namespace",
        "cluster",
        "kubeContext",
        "gpus",
        "pachydermChartVersion",
        "seldonChartVersion",
        "trainingOperatorRef",
        "pachdAddress",
        "stageImageRepo",
        "sampleSize",
        "epochs",
        "architecture",
        "minRougeL",
        "beatBaseline",
        "incremental",
        "parallelism",
        "fullRetrain",
        "gkeLocation",
        "cpuMachineType",
        "gpuMachineType",
        "gpuType",
        "gpuNodesMax",
        "bucketForceDestroy",
        "ingressControllerChartVersion",
        "lokiDeploy",
        "pachdRootToken",
        "trainer",
        "trainWorkers",  # training through a TFJob: read by _training_mode
    ),
    "registry": ("server", "username", "password"),
    "serving": (
        "imageRepo",
        "modelTag",
        "replicas",
        "ingress",
        "ingressHost",
        "gatewayNamespace",
        "namespace",
        "canaryTag",
        "canaryTraffic",
        "metricsScrape",
        "monitoringNamespace",
    ),
}


SCRAPE_KINDS = ("annotations", "podmonitor", "none")  # infra.serving.SCRAPE_KINDS (config imports no component)


class ConfigError(pulumi.RunError, ValueError):
    """A stack config value is missing or wrong; the message names the key and the fix."""


# serving:modelTag / serving:canaryTag: an export job ID (a Docker tag) or `latest`, the newest export that passed
# the gate (resolved by infra.rollout).
LATEST = "latest"
DEFAULT_CANARY_TRAFFIC = 10
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class RolloutConfig:
    """What the SeldonDeployment serves (serving:modelTag, canaryTag, canaryTraffic; infra/rollout.py)."""

    model: str | None  # job ID, "latest", or None (nothing to serve yet)
    canary: str | None = None
    canary_traffic: int = DEFAULT_CANARY_TRAFFIC

    @property
    def follows_pipeline(self) -> bool:
        return LATEST in (self.model, self.canary)


@dataclass(frozen=True)
class RegistryConfig:
    server: str
    username: str
    password: pulumi.Output[str]  # always a secret Output


@dataclass(frozen=True)
class ServingConfig:
    image_repo: str
    rollout: RolloutConfig
    replicas: int
    ingress: str  # "nginx": an Ingress routes /seldon/<ns>/<name>/ to Seldon; "none": port-forward
    ingress_host: str
    gateway_namespace: str  # the namespace whose pods may reach the model pods
    # Seldon and the model, apart from Pachyderm: this namespace enforces the `restricted` Pod Security level.
    namespace: str = "issue-titles-serving"
    # How Prometheus finds the model's metrics port: "annotations" (prometheus.io/*), "podmonitor" (the Prometheus
    # operator's CRD must be installed), or "none"; and the namespace Prometheus scrapes from.
    metrics_scrape: str = "annotations"
    monitoring_namespace: str = "monitoring"


@dataclass(frozen=True)
class GkeConfig:
    project: str
    location: str
    cpu_machine_type: str
    gpu_machine_type: str
    gpu_type: str
    gpu_nodes_max: int
    bucket_force_destroy: bool


@dataclass(frozen=True)
class TrainingConfig:
    gpus: int
    sample_size: int | None
    epochs: int | None
    architecture: str
    min_rouge_l: float
    beat_baseline: bool = True
    trainer: str = "pipeline"  # "tfjob": the train pipeline runs the training as a TFJob (infra/training.py)
    train_workers: int = 1  # the TFJob's Worker replicas; `gpus` is then per replica
    # The incremental data path (pipelines/incremental.py): `issue-titles:incremental`, the encoding workers
    # `issue-titles:parallelism`, and `issue-titles:fullRetrain` (train from scratch every job, `stages train --full`).
    incremental: bool = False
    parallelism: int = 2
    full_retrain: bool = False


@dataclass(frozen=True)
class StackConfig:
    stack: str
    namespace: str
    cluster: str  # "minikube" or "gke"
    kube_context: str | None
    pachd_address: str | None  # None on GKE: read from the pachyderm-proxy load balancer
    pachyderm_chart_version: str
    seldon_chart_version: str
    training_operator_ref: str
    ingress_controller_chart_version: str
    stage_image_repo: str
    registry: RegistryConfig
    serving: ServingConfig
    training: TrainingConfig
    gke: GkeConfig | None
    loki_deploy: bool = False  # Pachyderm's own Loki + promtail (a hostPath DaemonSet); off unless a stack asks
    # Pachyderm's root token (auth is on: the 2.12 chart activates it), always a secret Output (_pachd_root_token)
    pachd_root_token: pulumi.Output[str] | None = None

    @property
    def on_gke(self) -> bool:
        return self.cluster == "gke"


def check_owned_namespace(key: str, namespace: str, example: str) -> None:
    """A namespace the stack declares (and so would delete on destroy) may not be one Kubernetes reserves."""
    if namespace in RESERVED_NAMESPACES or namespace.startswith(RESERVED_NAMESPACE_PREFIX):
        raise ConfigError(
            f"invalid `{key}` {namespace!r}: `default` and `kube-*` namespaces belong to Kubernetes; the stack "
            f"declares this namespace and `pulumi destroy` would delete it: choose your own, e.g. {_fix(key, example)}"
        )


def check_namespace_name(key: str, namespace: str, example: str) -> None:
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        raise ConfigError(
            f"invalid `{key}` {namespace!r}: a namespace must be a DNS-1123 label (lowercase letters, digits and "
            f"'-', at most 63 characters), e.g. {_fix(key, example)}"
        )


def check_hostname(key: str, host: str) -> None:
    """The host of the prediction URL (`http://<host>/seldon/...`): a DNS name or an IPv4 address (minikube's IP),
    optionally with `:PORT`, at most 253 characters."""
    name, _, port = host.partition(":")
    labels = name.split(".")
    ipv4 = _IPV4.match(name) is not None and all(int(part) <= 255 for part in labels)
    hostname = not _IPV4.match(name) and len(name) <= 253 and all(_HOSTNAME_LABEL.match(label) for label in labels)
    port_ok = not port or (port.isdigit() and 1 <= int(port) <= 65535)
    if not name or not (ipv4 or hostname) or not port_ok or host.count(":") > 1:
        raise ConfigError(
            f"invalid `{key}` {host!r}: use a host name or IPv4 address, optionally with :PORT (lowercase letters, "
            f"digits, '-' and '.'), e.g. {_fix(key, 'titles.example.com')} or {_fix(key, '$(minikube ip)')}"
        )


def _fix(key: str, example: str, secret: bool = False) -> str:
    return f"`pulumi config set {'--secret ' if secret else ''}{key} {example}`"


def _set_keys() -> set[str]:
    """All config keys the stack sets. The engine hands the whole config to the program in PULUMI_CONFIG, which
    `pulumi.runtime.get_config_env` reads (pulumi/pulumi sdk/python/cmd/pulumi-language-python-exec loads the same
    map into `pulumi.Config`); `pulumi.Config` itself can only look keys up, not list them."""
    return set(pulumi.runtime.get_config_env())


def _check_unknown_keys(keys: set[str]) -> None:
    for key in sorted(keys):
        namespace, _, name = key.partition(":")
        known = KNOWN_KEYS.get(namespace)
        if known is None or name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean `{namespace}:{close[0]}`? " if close else ""
        raise ConfigError(
            f"unknown config key `{key}`: {hint}remove it with `pulumi config rm {key}`; "
            f"known `{namespace}:` keys are {', '.join(known)}"
        )


def _rollout(srv: _Reader) -> RolloutConfig:
    """The serving:* rollout keys, validated; errors name the key and the fix."""

    def tag(name: str) -> str | None:
        value = srv.text(name)
        if value is not None and not _TAG.match(value):
            raise ConfigError(
                f"invalid `{srv.key(name)}` {value!r}: use an export job ID (the tag in export's "
                f"image.json) or `{LATEST}`"
            )
        return value

    model, canary = tag("modelTag"), tag("canaryTag")
    raw = srv.text("canaryTraffic")
    traffic = DEFAULT_CANARY_TRAFFIC
    if raw is not None:
        if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= 99:
            raise ConfigError(
                f"invalid `{srv.key('canaryTraffic')}` {raw!r}: use a whole percent from 1 to 99, e.g. "
                f"{_fix(srv.key('canaryTraffic'), '10')}"
            )
        traffic = int(raw)
    if canary is not None and model is None:
        raise ConfigError(
            f"`{srv.key('canaryTag')}` is set but `{srv.key('modelTag')}` is not: a canary runs next to "
            f"a model. Set {_fix(srv.key('modelTag'), f'<job ID|{LATEST}>')} first"
        )
    return RolloutConfig(model=model, canary=canary, canary_traffic=traffic)


class _Reader:
    """Typed getters that turn bad values into ConfigErrors naming the key."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.cfg = pulumi.Config(namespace)

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.cfg.get(name)
        return default if value in (None, "") else value

    def required(self, name: str, example: str) -> str:
        value = self.text(name)
        if value is None:
            raise ConfigError(f"missing config `{self.key(name)}`: set it with {_fix(self.key(name), example)}")
        return value

    def integer(
        self, name: str, default: int | None, minimum: int, example: str, maximum: int | None = None
    ) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = self.cfg.get_int(name)
        except pulumi.ConfigTypeError:
            raise ConfigError(
                f"invalid `{self.key(name)}` {raw!r}: use a whole number, e.g. {_fix(self.key(name), example)}"
            ) from None
        if value < minimum:
            raise ConfigError(f"invalid `{self.key(name)}` {value}: must be {minimum} or more")
        if maximum is not None and value > maximum:
            raise ConfigError(
                f"invalid `{self.key(name)}` {value}: must be at most {maximum}, e.g. {_fix(self.key(name), example)}"
            )
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = self.cfg.get_float(name)
        except pulumi.ConfigTypeError:
            value = float("nan")
        if not low <= value <= high:
            raise ConfigError(f"invalid `{self.key(name)}` {raw!r}: use a number between {low} and {high}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise ConfigError(
                f"invalid `{self.key(name)}` {value!r}: use one of {', '.join(choices)}, "
                f"e.g. {_fix(self.key(name), choices[0])}"
            )
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return self.cfg.get_bool(name)
        except pulumi.ConfigTypeError:
            raise ConfigError(f"invalid `{self.key(name)}` {raw!r}: use true or false") from None


def _training_mode(app: _Reader) -> dict:
    """`trainer` (pipeline | tfjob) and `trainWorkers`: several workers only under a TFJob."""
    trainer = app.choice("trainer", "pipeline", TRAINERS)
    workers = app.integer("trainWorkers", 1, 1, "2")
    if workers > 1 and trainer != "tfjob":
        raise ConfigError(
            f"`{app.key('trainWorkers')}` is {workers} but `{app.key('trainer')}` is {trainer!r}: only a TFJob "
            f"trains on several workers; run {_fix(app.key('trainer'), 'tfjob')} or "
            f"{_fix(app.key('trainWorkers'), '1')}"
        )
    return {"trainer": trainer, "train_workers": workers}


def _incremental(app: _Reader, trainer: str) -> bool:
    """`incremental`: the sharded chain; its train updates the previous model, which a TFJob training does not yet."""
    incremental = app.boolean("incremental", False)
    if incremental and trainer == "tfjob":
        raise ConfigError(
            f"`{app.key('incremental')}` is true but `{app.key('trainer')}` is 'tfjob': the incremental train updates "
            f"its previous model, which a TFJob training does not do yet; run {_fix(app.key('trainer'), 'pipeline')} "
            f"or {_fix(app.key('incremental'), 'false')}"
        )
    return incremental


def load_config() -> StackConfig:
    """Read and validate the whole stack config; raise ConfigError naming the key and the fix."""
    _check_unknown_keys(_set_keys())
    stack = pulumi.get_stack()
    app, reg, srv = _Reader(PROJECT), _Reader("registry"), _Reader("serving")

    namespace = app.text("namespace", PROJECT)
    check_namespace_name(app.key("namespace"), namespace, PROJECT)
    check_owned_namespace(app.key("namespace"), namespace, PROJECT)

    serving_namespace = srv.text("namespace", f"{namespace}-serving")
    if len(serving_namespace) > 63 or not _DNS1123_LABEL.match(serving_namespace) or serving_namespace == namespace:
        raise ConfigError(
            f"invalid `{srv.key('namespace')}` {serving_namespace!r}: the model gets its own namespace (a DNS-1123 "
            f"label other than `{app.key('namespace')}` {namespace!r}, which runs Pachyderm), "
            f"e.g. {_fix(srv.key('namespace'), namespace + '-serving')}"
        )
    check_owned_namespace(srv.key("namespace"), serving_namespace, f"{PROJECT}-serving")
    # Not declared by the stack (only named in the model's NetworkPolicy), so a kube-* gateway is allowed; but it
    # ends up as a label value, which must be a DNS-1123 label.
    gateway_namespace = srv.text("gatewayNamespace", "ingress-nginx")
    check_namespace_name(srv.key("gatewayNamespace"), gateway_namespace, "ingress-nginx")
    # Where Prometheus runs: named in the NetworkPolicy, not declared, so (like the gateway) only its form is checked.
    monitoring_namespace = srv.text("monitoringNamespace", "monitoring")
    check_namespace_name(srv.key("monitoringNamespace"), monitoring_namespace, "monitoring")
    ingress_host = srv.text("ingressHost", "localhost")
    check_hostname(srv.key("ingressHost"), ingress_host)

    cluster = app.choice("cluster", "minikube", CLUSTER_KINDS)
    gpus = app.integer("gpus", 0, 0, "1")
    if cluster == "minikube" and gpus:
        raise ConfigError(
            f"`{app.key('gpus')}` is {gpus} but stack {stack!r} runs on minikube, which has no GPU node pool: "
            f"run {_fix(app.key('gpus'), '0')}, or use the gke-gpu stack for GPU training"
        )

    password = reg.cfg.get_secret("password")
    if password is None:
        raise ConfigError(
            f"missing secret `registry:password`: set it with {_fix('registry:password', '<token>', secret=True)} "
            "(never as plain config)"
        )
    if "registry:password" in _set_keys() and not pulumi.runtime.is_config_secret("registry:password"):
        raise ConfigError(
            "`registry:password` is stored in plain text: run `pulumi config rm registry:password` and "
            f"{_fix('registry:password', '<token>', secret=True)}"
        )

    pachd_root_token = _pachd_root_token(app)

    stage_image_repo = app.required("stageImageRepo", "registry.example.com/issue-titles/stages")
    serving_repo = srv.required("imageRepo", "registry.example.com/issue-titles/serving")
    for key, repo in ((app.key("stageImageRepo"), stage_image_repo), (srv.key("imageRepo"), serving_repo)):
        if not _IMAGE_REPO.match(repo):
            raise ConfigError(
                f"invalid `{key}` {repo!r}: give a repository without a tag (the program tags images itself), "
                f"e.g. {_fix(key, 'registry.example.com/issue-titles/stages')}"
            )

    pachd_address = app.text("pachdAddress")
    if cluster == "minikube" and pachd_address is None:
        raise ConfigError(
            f"missing config `{app.key('pachdAddress')}`: the program creates the pipelines through pachd's "
            f"NodePort; set it with {_fix(app.key('pachdAddress'), 'grpc://$(minikube ip):30080')}"
        )
    problem = None if pachd_address is None else address_problem(pachd_address)
    if problem is not None:
        raise ConfigError(
            f"invalid `{app.key('pachdAddress')}` {pachd_address!r}: {problem}, "
            f"e.g. {_fix(app.key('pachdAddress'), ADDRESS_EXAMPLE)}"
        )

    rollout = _rollout(srv)
    training_mode = _training_mode(app)

    gke = None
    if cluster == "gke":
        gke = GkeConfig(
            project=_Reader("gcp").required("project", "<your-gcp-project>"),
            location=app.required("gkeLocation", "us-central1-a"),
            cpu_machine_type=app.text("cpuMachineType", "e2-standard-4"),
            gpu_machine_type=app.text("gpuMachineType", "n1-standard-8"),
            gpu_type=app.text("gpuType", "nvidia-tesla-t4"),
            gpu_nodes_max=app.integer("gpuNodesMax", 2, 1, "2"),
            bucket_force_destroy=app.boolean("bucketForceDestroy", False),
        )

    sample_size = app.integer("sampleSize", None, 10, "2000")  # unset: every row (the tutorial sampled 2000)
    return StackConfig(
        stack=stack,
        namespace=namespace,
        cluster=cluster,
        kube_context=app.text("kubeContext"),
        pachd_address=pachd_address,
        pachyderm_chart_version=app.text("pachydermChartVersion", "2.12.2"),
        seldon_chart_version=app.text("seldonChartVersion", "1.17.1"),
        training_operator_ref=app.text("trainingOperatorRef", "v1.9.0"),
        ingress_controller_chart_version=app.text("ingressControllerChartVersion", "4.11.3"),
        stage_image_repo=stage_image_repo,
        registry=RegistryConfig(
            server=reg.required("server", "registry.example.com"),
            username=reg.required("username", "<user>"),
            password=pulumi.Output.secret(password),
        ),
        serving=ServingConfig(
            image_repo=serving_repo,
            rollout=rollout,
            replicas=srv.integer("replicas", 2, 1, "2", maximum=MAX_SERVING_REPLICAS),
            ingress=srv.choice("ingress", "nginx", INGRESS_KINDS),
            ingress_host=ingress_host,
            gateway_namespace=gateway_namespace,
            namespace=serving_namespace,
            metrics_scrape=srv.choice("metricsScrape", "annotations", SCRAPE_KINDS),
            monitoring_namespace=monitoring_namespace,
        ),
        training=TrainingConfig(
            gpus=gpus,
            sample_size=sample_size,
            epochs=app.integer("epochs", None, 1, "7"),
            architecture=app.choice("architecture", "default", ARCHITECTURES),
            min_rouge_l=app.number("minRougeL", 0.0, 0.0, 1.0),
            beat_baseline=app.boolean("beatBaseline", True),  # build refuses a model that loses to the baseline
            **training_mode,
            incremental=_incremental(app, training_mode["trainer"]),
            parallelism=app.integer("parallelism", 2, 1, "2") or 2,
            full_retrain=app.boolean("fullRetrain", False),
        ),
        gke=gke,
        loki_deploy=app.boolean("lokiDeploy", False),
        pachd_root_token=pachd_root_token,
    )


ROOT_TOKEN_KEY = f"{PROJECT}:pachdRootToken"
ROOT_TOKEN_EXAMPLE = '"$(openssl rand -hex 32)"'


def _pachd_root_token(app: _Reader) -> pulumi.Output[str]:
    """Pachyderm's root token, from secret config only.

    The 2.12 chart turns pachd's auth on by default (`pachd.activateAuth: true`) with a root token it draws at random
    on every render (pachyderm/pachyderm 2.12.x etc/helm/pachyderm/templates/pachd/auth-secret.yaml), and pachd
    rotates the root token to whatever the environment says at each start (src/server/auth/server/api_server.go,
    EnvBootstrap): the program pins it (infra/operators.py) and hands it to everything that calls pachd. A secret
    config key rather than a generated one: pulumi_random is not a dependency, and the user needs the value for
    `pachctl auth use-auth-token` anyway (`pulumi config get issue-titles:pachdRootToken`).
    """
    token = app.cfg.get_secret("pachdRootToken")
    fix = _fix(ROOT_TOKEN_KEY, ROOT_TOKEN_EXAMPLE, secret=True)
    if token is None:
        raise ConfigError(
            f"missing secret `{ROOT_TOKEN_KEY}`: Pachyderm's auth is on, and the program creates the repo and the "
            f"pipelines with this root token; set it with {fix} (never as plain config)"
        )
    if ROOT_TOKEN_KEY in _set_keys() and not pulumi.runtime.is_config_secret(ROOT_TOKEN_KEY):
        raise ConfigError(
            f"`{ROOT_TOKEN_KEY}` is stored in plain text: run `pulumi config rm {ROOT_TOKEN_KEY}` and {fix}"
        )
    return pulumi.Output.secret(token)
