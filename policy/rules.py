"""The guard rails of the issue-titles stacks, as plain functions over one resource's inputs.

Every rule takes `(resource_type, props)` (plus what it needs to know about the stack) and returns the list of
violation messages, empty when the resource complies. Nothing here imports Pulumi: the policy pack (`pack.py`)
wraps these functions, and the tests call them directly with hand-made and with mocked resources. Image references are
read with the project's one grammar (pipelines.images; pipelines imports neither Pulumi nor the program).

Property names are the ones the engine hands to policies: the camelCase Kubernetes/Pachyderm field names.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pipelines.images import ImageReferenceError, parse

GPU_RESOURCE = "nvidia.com/gpu"
DYNAMIC_RESOURCE = "pulumi-python:dynamic:Resource"
DOCKER_IMAGE = "docker:index/image:Image"
K8S_SECRET = "kubernetes:core/v1:Secret"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
# Tags that move: an image named by one of these is not pinned even though it has a tag.
FLOATING_TAGS = frozenset({"latest", "stable", "main", "master", "edge", "nightly", "dev", "develop", "head"})
# Pipelines whose container must run as root, and why. Anything else that asks for uid 0 is a violation. None today:
# export pushes the serving image through the registry API as the stage image's non-root user (docs/CONTRACTS.md).
ROOT_PIPELINES: dict[str, str] = {}
# Components that render third-party manifests we do not author (their pod specs are upstream's): resources under
# one of these are checked by an advisory copy of the workload rules instead of the mandatory one.
THIRD_PARTY_BUNDLES = (
    "kubernetes:kustomize/v2:Directory",
    "kubernetes:kustomize:Directory",
    "kubernetes:yaml/v2:ConfigGroup",
    "kubernetes:yaml/v2:ConfigFile",
    "kubernetes:yaml:ConfigGroup",
    "kubernetes:yaml:ConfigFile",
    "kubernetes:helm.sh/v4:Chart",
    "kubernetes:helm.sh/v3:Chart",
)
# Training-operator jobs: the spec key holding each kind's replica specs (the `json:"..."` tags of kubeflow/
# training-operator v1.9.0 pkg/apis/kubeflow.org/v1/{tensorflow,pytorch,mpi,xgboost,jax,paddlepaddle}_types.go).
REPLICA_SPECS_KEY = {
    "TFJob": "tfReplicaSpecs",
    "PyTorchJob": "pytorchReplicaSpecs",
    "MPIJob": "mpiReplicaSpecs",
    "XGBoostJob": "xgbReplicaSpecs",
    "JAXJob": "jaxReplicaSpecs",
    "PaddleJob": "paddleReplicaSpecs",
}
# Kinds whose pod template sits at spec.template.spec.
_TEMPLATED_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
_SECRETISH_ENV = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY)", re.IGNORECASE)

Props = Mapping[str, Any]


# --- reading resources --------------------------------------------------------------------------------------------


def kind_of(resource_type: str, props: Props) -> str:
    """The Kubernetes kind: the resource's `kind` input, else the last segment of its Pulumi type token."""
    kind = props.get("kind") if isinstance(props, Mapping) else None
    if isinstance(kind, str) and kind:
        return kind
    return resource_type.rsplit(":", 1)[-1]


def is_kubernetes(resource_type: str) -> bool:
    return resource_type.startswith("kubernetes:") and not resource_type.startswith("kubernetes:helm.sh/")


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def pod_specs(resource_type: str, props: Props) -> list[tuple[str, Mapping[str, Any]]]:
    """Every pod spec a Kubernetes resource declares, with a label saying where it sits."""
    if not is_kubernetes(resource_type):
        return []
    kind = kind_of(resource_type, props)
    spec = props.get("spec")
    found: list[tuple[str, Any]] = []
    if kind == "Pod":
        found.append(("spec", spec))
    elif kind in _TEMPLATED_KINDS:
        found.append(("spec.template.spec", _get(spec, "template", "spec")))
    elif kind == "CronJob":
        found.append(("spec.jobTemplate.spec.template.spec", _get(spec, "jobTemplate", "spec", "template", "spec")))
    elif kind == "SeldonDeployment":
        for p, predictor in enumerate(_list(_get(spec, "predictors"))):
            for c, component in enumerate(_list(_get(predictor, "componentSpecs"))):
                found.append((f"spec.predictors[{p}].componentSpecs[{c}].spec", _get(component, "spec")))
    elif kind in REPLICA_SPECS_KEY:
        key = REPLICA_SPECS_KEY[kind]
        replica_specs = _get(spec, key)
        for role, replica in replica_specs.items() if isinstance(replica_specs, Mapping) else ():
            found.append((f"spec.{key}.{role}.template.spec", _get(replica, "template", "spec")))
    return [(where, pod) for where, pod in found if isinstance(pod, Mapping)]


def containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers"):
        for index, container in enumerate(_list(pod.get(field))):
            if isinstance(container, Mapping):
                yield f"{field}[{index}] {container.get('name', '?')!s}", container


def pipeline_spec(resource_type: str, props: Props) -> Mapping[str, Any] | None:
    """A Pachyderm pipeline's CreatePipelineRequest, from a dynamic resource's inputs (None for anything else).

    Pipelines are not Kubernetes objects: the program creates them through pachd with a dynamic provider, whose
    inputs carry the spec (as a dict, or as its JSON text).
    """
    if resource_type != DYNAMIC_RESOURCE:
        return None
    candidates = [props.get("spec")] + [v for k, v in props.items() if k != "spec" and not k.startswith("__")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.lstrip().startswith("{"):
            try:
                candidate = json.loads(candidate)
            except ValueError:
                continue
        if isinstance(candidate, Mapping) and isinstance(candidate.get("transform"), Mapping):
            return candidate
    return None


def pipeline_name(spec: Mapping[str, Any]) -> str:
    name = _get(spec, "pipeline", "name")
    return name if isinstance(name, str) else "?"


def is_third_party(urn: str) -> bool:
    """True when the URN's type chain shows the resource was rendered by a third-party manifest bundle."""
    parts = urn.split("::")
    type_chain = parts[2].split("$")[:-1] if len(parts) >= 4 else []
    return any(t in THIRD_PARTY_BUNDLES for t in type_chain)


# --- rule: no cluster-admin bindings --------------------------------------------------------------------------------


def no_cluster_admin_binding(resource_type: str, props: Props) -> list[str]:
    """Nothing the stack makes may hand out cluster-admin: operators get their own, narrower roles."""
    if not is_kubernetes(resource_type) or kind_of(resource_type, props) not in ("ClusterRoleBinding", "RoleBinding"):
        return []
    role_ref = props.get("roleRef") or {}
    if _get(role_ref, "name") == "cluster-admin":
        name = _get(props, "metadata", "name") or "?"
        subjects = (
            ", ".join(
                f"{_get(s, 'kind')}/{_get(s, 'name')}" for s in _list(props.get("subjects")) if isinstance(s, Mapping)
            )
            or "no subjects"
        )
        return [
            f"{kind_of(resource_type, props)} {name} binds the cluster-admin ClusterRole ({subjects}): "
            "grant a role with only the verbs the subject needs"
        ]
    return []


# --- rule: TFJob rights only through a namespaced Role, with the launcher's verbs ------------------------------------

# What the train pipeline's launcher may do with TFJobs (stages/src/issue_titles/tfjob.py, infra/training.py).
TFJOB_VERBS = frozenset({"create", "get", "watch", "delete"})
# ... and with the per-job Secret holding the replicas' S3 credentials: make it and remove it, never read one.
LAUNCHER_SECRET_VERBS = frozenset({"create", "delete"})


def _grants_secrets(rule: Any) -> bool:
    groups, resources = _list(_get(rule, "apiGroups")), _list(_get(rule, "resources"))
    return bool({"", "*"} & set(groups)) and bool({"secrets", "*"} & set(resources))


def _grants_tfjobs(rule: Any) -> bool:
    groups, resources = _list(_get(rule, "apiGroups")), _list(_get(rule, "resources"))
    return bool({"kubeflow.org", "*"} & set(groups)) and bool({"tfjobs", "*"} & set(resources))


def tfjob_rights_least_privilege(resource_type: str, props: Props) -> list[str]:
    """Whoever may start TFJobs (which run any image with the cluster's GPUs) gets it in one namespace, through a
    Role, for the verbs the launcher uses: never a ClusterRole, never `*` or extra verbs (update, patch, list...).
    The same Role may create and delete Secrets (the job's S3 credentials), in a rule of their own, and never read
    them (get, list, watch) or change them (update, patch)."""
    kind = kind_of(resource_type, props)
    if not is_kubernetes(resource_type) or kind not in ("Role", "ClusterRole"):
        return []
    name = _get(props, "metadata", "name") or "?"
    found = []
    rules = [rule for rule in _list(props.get("rules")) if isinstance(rule, Mapping)]
    if kind == "Role" and any(_grants_tfjobs(rule) for rule in rules):
        for rule in rules:
            if _grants_tfjobs(rule) or not _grants_secrets(rule):
                continue
            extra = sorted(set(_list(rule.get("verbs"))) - LAUNCHER_SECRET_VERBS)
            if extra:
                found.append(
                    f"Role {name} grants {', '.join(extra)} on Secrets: the TFJob launcher needs only "
                    f"{', '.join(sorted(LAUNCHER_SECRET_VERBS))} (it never reads a Secret)"
                )
            if set(_list(rule.get("resources"))) - {"secrets"} or set(_list(rule.get("apiGroups"))) - {""}:
                found.append(
                    f"Role {name} grants Secret rights together with other resources: give Secrets a rule "
                    'of their own (apiGroups [""], resources [secrets])'
                )
    for rule in rules:
        if not _grants_tfjobs(rule):
            continue
        if kind == "ClusterRole":
            found.append(f"ClusterRole {name} grants TFJob rights cluster-wide: use a Role in the pipelines' namespace")
            continue
        extra = sorted(set(_list(rule.get("verbs"))) - TFJOB_VERBS)
        if extra:
            found.append(
                f"Role {name} grants {', '.join(extra)} on TFJobs: only {', '.join(sorted(TFJOB_VERBS))} are needed"
            )
        if set(_list(rule.get("resources"))) - {"tfjobs"} or set(_list(rule.get("apiGroups"))) - {"kubeflow.org"}:
            found.append(
                f"Role {name} grants TFJob rights together with other resources: give TFJobs a rule of "
                "their own (apiGroups [kubeflow.org], resources [tfjobs])"
            )
    return found


# --- rule: requests and limits on every container --------------------------------------------------------------------


def _missing_quantities(resources: Any, section: str) -> list[str]:
    values = _get(resources, section)
    if not isinstance(values, Mapping):
        return ["cpu", "memory"]
    return [name for name in ("cpu", "memory") if values.get(name) in (None, "", 0)]


def container_resources(resource_type: str, props: Props) -> list[str]:
    """Every container (and every pipeline worker) requests and is limited to CPU and memory, so one runaway
    training job cannot starve pachd or the model server on the same node."""
    messages = []
    for where, pod in pod_specs(resource_type, props):
        for label, container in containers(pod):
            for section in ("requests", "limits"):
                missing = _missing_quantities(container.get("resources"), section)
                if missing:
                    messages.append(f"{where} {label}: resources.{section} lacks {' and '.join(missing)}")
    spec = pipeline_spec(resource_type, props)
    if spec is not None:
        for field in ("resourceRequests", "resourceLimits"):
            values = spec.get(field)
            missing = [
                n for n in ("cpu", "memory") if not isinstance(values, Mapping) or values.get(n) in (None, "", 0)
            ]
            if missing:
                messages.append(f"pipeline {pipeline_name(spec)}: {field} lacks {' and '.join(missing)}")
    return messages


# --- rule: non-root -------------------------------------------------------------------------------------------------


def _uid(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _runs_as_root(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str | None:
    """Why the container may run as root, or None when the effective security context rules it out."""
    own, pod_level = container.get("securityContext") or {}, pod.get("securityContext") or {}
    user = _uid(own.get("runAsUser")) if own.get("runAsUser") is not None else _uid(pod_level.get("runAsUser"))
    non_root = own.get("runAsNonRoot") if own.get("runAsNonRoot") is not None else pod_level.get("runAsNonRoot")
    if user == 0:
        return "runAsUser is 0"
    if non_root is False and not (user and user > 0):
        return "runAsNonRoot is false"
    if non_root is True or (user is not None and user > 0):
        return None
    return "neither runAsNonRoot: true nor a runAsUser above 0 is set (pod or container securityContext)"


def container_non_root(resource_type: str, props: Props) -> list[str]:
    """Every container runs as a non-root user; a pipeline may ask for root only where ROOT_PIPELINES says why."""
    messages = []
    for where, pod in pod_specs(resource_type, props):
        for label, container in containers(pod):
            reason = _runs_as_root(pod, container)
            if reason:
                messages.append(f"{where} {label} may run as root: {reason}")
    spec = pipeline_spec(resource_type, props)
    if spec is not None:
        user = _get(spec, "transform", "user")
        name = pipeline_name(spec)
        if isinstance(user, (str, int)) and str(user).split(":")[0] in ("0", "root") and name not in ROOT_PIPELINES:
            allowed = (
                f"only {sorted(ROOT_PIPELINES)} may run as root" if ROOT_PIPELINES else "no pipeline may run as root"
            )
            messages.append(f"pipeline {name}: transform.user is {user!r} (root); {allowed}")
    return messages


# --- rule: pinned images --------------------------------------------------------------------------------------------


def image_problem(image: Any) -> str | None:
    """Why an image reference is not pinned, or None when it names a digest or a fixed tag."""
    if not isinstance(image, str) or not image.strip():
        return "no image reference"
    try:
        reference = parse(image)  # pipelines.images: the grammar the program writes its references in
    except ImageReferenceError as error:
        return f"is not a valid image reference ({error})"
    if reference.digest is not None:
        return None
    if reference.tag is None:
        return "has no tag or digest (that means :latest)"
    if reference.tag.lower() in FLOATING_TAGS:
        return f"uses the moving tag :{reference.tag}"
    return None


def images(resource_type: str, props: Props) -> list[tuple[str, Any]]:
    """Every image reference a resource runs or builds, with where it sits."""
    found: list[tuple[str, Any]] = []
    for where, pod in pod_specs(resource_type, props):
        for label, container in containers(pod):
            found.append((f"{where} {label}", container.get("image")))
    spec = pipeline_spec(resource_type, props)
    if spec is not None:
        found.append((f"pipeline {pipeline_name(spec)} transform.image", _get(spec, "transform", "image")))
    if resource_type == DOCKER_IMAGE:
        found.append(("imageName", props.get("imageName")))
    return found


def pinned_images(resource_type: str, props: Props) -> list[str]:
    """No `:latest`, no missing tag, no moving tag: a rollout must run exactly the image that was reviewed."""
    messages = []
    for where, image in images(resource_type, props):
        problem = image_problem(image)
        if problem:
            messages.append(f"{where}: image {image!r} {problem}; pin it to a version tag or a digest")
    return messages


# --- rule: GPUs only on the GPU stack ---------------------------------------------------------------------------------


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return bool(value)


def gpu_requests(resource_type: str, props: Props) -> list[str]:
    """Where a resource asks for GPUs: container resources, pipeline `gpu` resources, GKE accelerators."""
    found = []
    for where, pod in pod_specs(resource_type, props):
        for label, container in containers(pod):
            for section in ("requests", "limits"):
                for key, value in (_get(container, "resources", section) or {}).items():
                    if key.endswith("/gpu") and _positive(value):
                        found.append(f"{where} {label} resources.{section}[{key}] = {value}")
    spec = pipeline_spec(resource_type, props)
    if spec is not None:
        for field in ("resourceRequests", "resourceLimits"):
            gpu = _get(spec, field, "gpu")
            if isinstance(gpu, Mapping) and _positive(gpu.get("number")):
                found.append(
                    f"pipeline {pipeline_name(spec)} {field}.gpu = {gpu.get('number')} {gpu.get('type', '')}".rstrip()
                )
    if resource_type.startswith("gcp:container/"):
        node_configs = [props.get("nodeConfig")] + [
            p.get("nodeConfig") for p in _list(props.get("nodePools")) if isinstance(p, Mapping)
        ]
        for node_config in node_configs:
            for accelerator in _list(_get(node_config, "guestAccelerators")):
                if isinstance(accelerator, Mapping) and _positive(accelerator.get("count")):
                    found.append(f"nodeConfig.guestAccelerators {accelerator.get('type')} x{accelerator.get('count')}")
    return found


def gpu_only_on_gpu_stack(resource_type: str, props: Props, gpu_allowed: bool) -> list[str]:
    """GPUs cost money and do not exist on minikube: only a stack meant for them may ask for any."""
    if gpu_allowed:
        return []
    return [f"{where}: GPUs are requested on a stack without GPUs" for where in gpu_requests(resource_type, props)]


def gpu_allowed_for(stack: str | None, gpu_stacks: Sequence[str]) -> bool:
    return stack is not None and stack.rsplit("/", 1)[-1] in gpu_stacks


# --- rule: the registry password is never a plain value --------------------------------------------------------------
#
# What a policy can and cannot see: the engine hands policies the resource inputs with secrets marked, but the
# Python SDK (pulumi_policy.deserialize) unwraps the marker before a policy runs, so a policy cannot tell a secret
# input from a plain one. Secrecy itself is therefore guarded where it can be seen: `infra/config.py` refuses a
# `registry:password` that is not secret config, and tests/delivery/test_policies_on_stacks.py checks on the wire
# format of the mocked program that every input carrying the password is secret-wrapped.
# What this rule checks at policy time is *where* credentials appear: only in the places built to hold them
# (the dockerconfigjson Secret's data, the docker image's registry block, a docker provider's registryAuth), and
# never in a ConfigMap, an annotation, a container env literal, a pipeline spec or any other input. When the
# stack's `registry:password` is readable (the engine passes the stack config to policy packs), its value is
# looked for everywhere else too, also base64-encoded and inside JSON strings.

_ALLOWED_CREDENTIAL_PATHS = {
    K8S_SECRET: ("data", "stringData"),
    DOCKER_IMAGE: ("registry",),
    "pulumi:providers:docker": ("registryAuth",),
}


def _decoded_variants(text: str) -> Iterator[str]:
    yield text
    stripped = text.strip()
    if len(stripped) >= 8 and re.fullmatch(r"[A-Za-z0-9+/=_-]+", stripped):
        try:
            yield base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=False).decode("utf-8", "ignore")
        except (binascii.Error, ValueError):
            pass


def _walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        for index, item in enumerate(value):
            yield from _walk_strings(item, f"{path}[{index}]")


def _docker_config_credentials(text: str) -> bool:
    """True when a string is (or base64-encodes) a docker config JSON that carries a password or an auth."""
    for variant in _decoded_variants(text):
        if '"auths"' not in variant:
            continue
        try:
            document = json.loads(variant)
        except ValueError:
            return True  # looks like credentials, cannot tell: treat as credentials
        auths = document.get("auths") if isinstance(document, Mapping) else None
        if isinstance(auths, Mapping) and any(
            isinstance(entry, Mapping) and (entry.get("password") or entry.get("auth")) for entry in auths.values()
        ):
            return True
    return False


def _allowed(resource_type: str, props: Props, path: str) -> bool:
    roots = _ALLOWED_CREDENTIAL_PATHS.get(resource_type, ())
    if resource_type == K8S_SECRET and props.get("type") != DOCKER_CONFIG_JSON:
        return False
    return any(path == root or path.startswith(root + ".") or path.startswith(root + "[") for root in roots)


def registry_password_exposures(resource_type: str, props: Props, password: str | None = None) -> list[str]:
    """Registry credentials appear only where they are meant to be, and the password nowhere in plain sight."""
    messages = []
    for path, text in _walk_strings({k: v for k, v in props.items() if not k.startswith("__")}):
        if _allowed(resource_type, props, path):
            continue
        if password and any(password in variant for variant in _decoded_variants(text)):
            messages.append(f"{path}: contains the registry password; pass it only through the registry Secret")
        elif _docker_config_credentials(text):
            messages.append(f"{path}: holds docker registry credentials outside a {DOCKER_CONFIG_JSON} Secret")
    for where, pod in pod_specs(resource_type, props):
        for label, container in containers(pod):
            for env in _list(container.get("env")):
                if isinstance(env, Mapping) and _SECRETISH_ENV.search(str(env.get("name", ""))) and env.get("value"):
                    messages.append(
                        f"{where} {label} env {env.get('name')} is a literal value: use valueFrom.secretKeyRef"
                    )
    if password and "__provider" in props and isinstance(props["__provider"], str):
        # A dynamic provider is pickled into its inputs (and so into the state) in plain text.
        if any(password in variant for variant in _decoded_variants(props["__provider"])):
            messages.append("__provider: the serialized dynamic provider captured the registry password")
    return messages
