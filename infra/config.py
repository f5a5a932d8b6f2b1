"""Stack configuration, read once and validated before any resource is declared.

Every error names the config key and the command that fixes it, so `pulumi preview` stops before any resource
changes (a ConfigError is a `pulumi.RunError`: Pulumi prints the message, not a Python traceback).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.pachd import ADDRESS_EXAMPLE, address_problem
from pipelines.images import repository_problem, tag_problem
from pipelines.settings import ARCHITECTURES, TRAINERS, PipelineSettings, SettingsError
from pipelines.settings import K8S_NAME as _DNS1123_LABEL

PROJECT = "issue-titles"
CLUSTER_KINDS = ("minikube", "gke")
INGRESS_KINDS = ("nginx", "none")
# The pinned versions of what the stack installs, the one place they are set: a stack may override each key.
# (StackConfig field, config key, default)
VERSIONS: tuple[tuple[str, str, str], ...] = (
    ("pachyderm_chart_version", "pachydermChartVersion", "2.12.2"),
    ("seldon_chart_version", "seldonChartVersion", "1.17.1"),  # Seldon Core v1's last Apache-2.0 release
    ("training_operator_ref", "trainingOperatorRef", "v1.9.0"),  # infra.operators.TRAINING_OPERATOR_MANIFESTS
    ("ingress_controller_chart_version", "ingressControllerChartVersion", "4.11.3"),
)
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
    # The pipelines' knobs (training included), validated; its stage_image is the repository until __main__.py hands
    # it the image the program builds.
    pipeline: PipelineSettings
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


def _invalid(key: str, shown: str, why: str, example: str) -> ConfigError:
    """`invalid `key` <value>: <why>, e.g. `pulumi config set key <example>``."""
    return ConfigError(f"invalid `{key}` {shown}: {why}, e.g. {_fix(key, example)}")


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


class _Reader:
    """Typed getters for one config namespace that turn bad values into ConfigErrors naming the key. They parse; the
    ranges of the training knobs are PipelineSettings' (pipelines/settings.py), reported under their keys by
    _pipeline_settings."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.cfg = pulumi.Config(namespace)

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def optional(self, name: str) -> str | None:
        value = self.cfg.get(name)
        return None if value in (None, "") else value

    def text(self, name: str, default: str) -> str:
        value = self.optional(name)
        return default if value is None else value

    def required(self, name: str, example: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(f"missing config `{self.key(name)}`: set it with {_fix(self.key(name), example)}")
        return value

    def _parsed(self, name: str, get: Callable[[str], Any], use: str) -> Any:
        """The key's value as `get` parses it, or None when the key is unset; `use` says what to write instead."""
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            value = get(name)
        except pulumi.ConfigTypeError:
            value = None
        if value is None:
            raise ConfigError(f"invalid `{self.key(name)}` {raw!r}: use {use}")
        return value

    def whole(self, name: str, example: str) -> int | None:
        """A whole number, or None when the key is unset."""
        value: int | None = self._parsed(
            name, self.cfg.get_int, f"a whole number, e.g. {_fix(self.key(name), example)}"
        )
        return value

    def integer(self, name: str, default: int, minimum: int, example: str, maximum: int | None = None) -> int:
        value = self.whole(name, example)
        if value is None:
            return default
        if value < minimum:
            raise ConfigError(f"invalid `{self.key(name)}` {value}: must be {minimum} or more")
        if maximum is not None and value > maximum:
            raise ConfigError(
                f"invalid `{self.key(name)}` {value}: must be at most {maximum}, e.g. {_fix(self.key(name), example)}"
            )
        return value

    def number(self, name: str, example: str) -> float | None:
        """A number, or None when the key is unset."""
        value: float | None = self._parsed(name, self.cfg.get_float, f"a number, e.g. {_fix(self.key(name), example)}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise ConfigError(
                f"invalid `{self.key(name)}` {value!r}: use one of {', '.join(choices)}, "
                f"e.g. {_fix(self.key(name), choices[0])}"
            )
        return value

    def flag(self, name: str) -> bool | None:
        """true or false, or None when the key is unset."""
        value: bool | None = self._parsed(name, self.cfg.get_bool, "true or false")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.flag(name)
        return default if value is None else value

    def secret(self, name: str, example: str, why: str) -> pulumi.Output[str]:
        """A secret key's value: refused when missing or stored in plain text."""
        key, value = self.key(name), self.cfg.get_secret(name)
        fix = _fix(key, example, secret=True)
        if value is None:
            raise ConfigError(f"missing secret `{key}`: {why}set it with {fix} (never as plain config)")
        if key in _set_keys() and not pulumi.runtime.is_config_secret(key):
            raise ConfigError(f"`{key}` is stored in plain text: run `pulumi config rm {key}` and {fix}")
        return pulumi.Output.secret(value)


# --- the readers, one per part of the stack -----------------------------------------------------------------------


def _namespaces(app: _Reader, srv: _Reader) -> tuple[str, str]:
    """`issue-titles:namespace` (Pachyderm) and `serving:namespace` (the model): both declared, both distinct."""
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
    return namespace, serving_namespace


def _image_repo(reader: _Reader, name: str, example: str) -> str:
    """A repository the program tags itself (pipelines.images' grammar, no tag or digest)."""
    repo = reader.required(name, example)
    problem = repository_problem(repo)
    if problem is not None:
        why = f"give a repository without a tag (the program tags images itself): {problem}"
        raise _invalid(reader.key(name), repr(repo), why, example)
    return repo


def _registry(reg: _Reader) -> RegistryConfig:
    return RegistryConfig(
        server=reg.required("server", "registry.example.com"),
        username=reg.required("username", "<user>"),
        password=reg.secret("password", "<token>", ""),
    )


def _pachd_address(app: _Reader, cluster: str) -> str | None:
    """minikube: the NodePort address the program creates the pipelines through; GKE: None (the load balancer's)."""
    address = app.optional("pachdAddress")
    if cluster == "minikube" and address is None:
        raise ConfigError(
            f"missing config `{app.key('pachdAddress')}`: the program creates the pipelines through pachd's "
            f"NodePort; set it with {_fix(app.key('pachdAddress'), 'grpc://$(minikube ip):30080')}"
        )
    problem = None if address is None else address_problem(address)
    if problem is not None:
        raise _invalid(app.key("pachdAddress"), repr(address), problem, ADDRESS_EXAMPLE)
    return address


def _rollout(srv: _Reader) -> RolloutConfig:
    """The serving:* rollout keys, validated; errors name the key and the fix."""

    def tag(name: str) -> str | None:
        value = srv.optional(name)
        if value is not None and tag_problem(value) is not None:
            raise ConfigError(
                f"invalid `{srv.key(name)}` {value!r}: use an export job ID (the tag in export's "
                f"image.json) or `{LATEST}`"
            )
        return value

    model, canary = tag("modelTag"), tag("canaryTag")
    raw = srv.optional("canaryTraffic")
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


def _serving(srv: _Reader, namespace: str) -> ServingConfig:
    """The serving:* keys but the image repository (read with the pipeline settings) and the rollout."""
    # Not declared by the stack (only named in the model's NetworkPolicy), so a kube-* gateway is allowed; but it
    # ends up as a label value, which must be a DNS-1123 label.
    gateway_namespace = srv.text("gatewayNamespace", "ingress-nginx")
    check_namespace_name(srv.key("gatewayNamespace"), gateway_namespace, "ingress-nginx")
    # Where Prometheus runs: named in the NetworkPolicy, not declared, so (like the gateway) only its form is checked.
    monitoring_namespace = srv.text("monitoringNamespace", "monitoring")
    check_namespace_name(srv.key("monitoringNamespace"), monitoring_namespace, "monitoring")
    ingress_host = srv.text("ingressHost", "localhost")
    check_hostname(srv.key("ingressHost"), ingress_host)
    return ServingConfig(
        image_repo=_image_repo(srv, "imageRepo", "registry.example.com/issue-titles/serving"),
        rollout=_rollout(srv),
        replicas=srv.integer("replicas", 2, 1, "2", maximum=MAX_SERVING_REPLICAS),
        ingress=srv.choice("ingress", "nginx", INGRESS_KINDS),
        ingress_host=ingress_host,
        gateway_namespace=gateway_namespace,
        namespace=namespace,
        metrics_scrape=srv.choice("metricsScrape", "annotations", SCRAPE_KINDS),
        monitoring_namespace=monitoring_namespace,
    )


# The issue-titles:* key of each PipelineSettings field a stack sets, with an example for the fix. Their ranges and
# choices are PipelineSettings' own (pipelines/settings.py); _pipeline_settings reports them under these keys.
PIPELINE_KEYS: dict[str, tuple[str, str]] = {
    "sample_size": ("sampleSize", "2000"),  # unset: every row (the tutorial sampled 2000)
    "epochs": ("epochs", "7"),
    "architecture": ("architecture", ARCHITECTURES[0]),
    "min_rouge_l": ("minRougeL", "0.2"),
    "beat_baseline": ("beatBaseline", "true"),  # build refuses a model that loses to the baseline
    "gpus": ("gpus", "1"),
    "trainer": ("trainer", TRAINERS[0]),
    "train_workers": ("trainWorkers", "1"),  # several only under a TFJob
    "incremental": ("incremental", "false"),  # unset: on, unless trainer is tfjob (a TFJob does not update yet)
    "parallelism": ("parallelism", "2"),
    "full_retrain": ("fullRetrain", "false"),
}
_WHOLE_FIELDS = ("sample_size", "epochs", "gpus", "train_workers", "parallelism")
_FLAG_FIELDS = ("beat_baseline", "incremental", "full_retrain")


def _pipeline_settings(app: _Reader, stage_image_repo: str, serving_image_repo: str) -> PipelineSettings:
    """The pipelines' knobs, validated by PipelineSettings; a problem is reported under its config key.

    `stage_image` is the stage image's repository here: the program builds the image and hands the pipelines its
    digest reference (`dataclasses.replace` in __main__.py). Unset keys keep PipelineSettings' defaults."""
    values: dict[str, Any] = {}
    for field, (name, example) in PIPELINE_KEYS.items():
        if field in _WHOLE_FIELDS:
            values[field] = app.whole(name, example)
        elif field in _FLAG_FIELDS:
            values[field] = app.flag(name)
        elif field == "min_rouge_l":
            values[field] = app.number(name, example)
        else:
            values[field] = app.optional(name)
    given = {field: value for field, value in values.items() if value is not None}
    try:
        return PipelineSettings(stage_image=stage_image_repo, serving_image_repo=serving_image_repo, **given)
    except SettingsError as error:
        problem = error.problems[0]
        if problem.field not in PIPELINE_KEYS:  # the repositories: checked by _image_repo already
            raise ConfigError(str(error)) from None
        name, example = PIPELINE_KEYS[problem.field]
        key = app.key(name)
        described = problem.describe(lambda field: f"`{app.key(PIPELINE_KEYS[field][0])}`")
        raise _invalid(key, _shown(values[problem.field]), described, example) from None


def _shown(value: Any) -> str:
    """A config value as the user wrote it: `true`, `2`, `'tfjob'`."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _versions(app: _Reader) -> dict[str, str]:
    return {field: app.text(name, default) for field, name, default in VERSIONS}


def _gke(app: _Reader) -> GkeConfig:
    return GkeConfig(
        project=_Reader("gcp").required("project", "<your-gcp-project>"),
        location=app.required("gkeLocation", "us-central1-a"),
        cpu_machine_type=app.text("cpuMachineType", "e2-standard-4"),
        gpu_machine_type=app.text("gpuMachineType", "n1-standard-8"),
        gpu_type=app.text("gpuType", "nvidia-tesla-t4"),
        gpu_nodes_max=app.integer("gpuNodesMax", 2, 1, "2"),
        bucket_force_destroy=app.boolean("bucketForceDestroy", False),
    )


def load_config() -> StackConfig:
    """Read and validate the whole stack config; raise ConfigError naming the key and the fix."""
    _check_unknown_keys(_set_keys())
    stack = pulumi.get_stack()
    app, srv = _Reader(PROJECT), _Reader("serving")
    namespace, serving_namespace = _namespaces(app, srv)
    serving = _serving(srv, serving_namespace)
    cluster = app.choice("cluster", "minikube", CLUSTER_KINDS)
    stage_image_repo = _image_repo(app, "stageImageRepo", "registry.example.com/issue-titles/stages")
    pipeline = _pipeline_settings(app, stage_image_repo, serving.image_repo)
    if cluster == "minikube" and pipeline.gpus:
        raise ConfigError(
            f"`{app.key('gpus')}` is {pipeline.gpus} but stack {stack!r} runs on minikube, which has no GPU node "
            f"pool: run {_fix(app.key('gpus'), '0')}, or use the gke-gpu stack for GPU training"
        )
    return StackConfig(
        stack=stack,
        namespace=namespace,
        cluster=cluster,
        kube_context=app.optional("kubeContext"),
        pachd_address=_pachd_address(app, cluster),
        **_versions(app),
        stage_image_repo=stage_image_repo,
        registry=_registry(_Reader("registry")),
        serving=serving,
        pipeline=pipeline,
        gke=_gke(app) if cluster == "gke" else None,
        loki_deploy=app.boolean("lokiDeploy", False),
        pachd_root_token=_pachd_root_token(app),
    )


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
    why = "Pachyderm's auth is on, and the program creates the repo and the pipelines with this root token; "
    return app.secret("pachdRootToken", ROOT_TOKEN_EXAMPLE, why)
