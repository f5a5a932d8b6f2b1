"""The policies of the pack: `rules.py` functions wrapped as pulumi-policy validations.

Kept apart from `__main__.py` (which starts the policy server) so tests can build and run the real Policy objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pulumi
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

try:  # imported as `policy.pack` (tests) or as the top-level `pack` (Pulumi runs the pack from its folder)
    from . import rules
except ImportError:  # pragma: no cover - the Pulumi runtime path
    import rules  # type: ignore[no-redef,import-not-found]

DEFAULT_GPU_STACKS = ["gke-gpu"]
Rule = Callable[[ResourceValidationArgs], list[str]]


def current_stack() -> str | None:
    """The stack being deployed: the engine configures it for policy packs (Config / get_stack work there)."""
    try:
        return pulumi.get_stack()
    except Exception:
        return None


def stack_registry_password() -> str | None:
    """The stack's `registry:password`, when the engine passed the stack config to the pack (else None)."""
    try:
        return pulumi.Config("registry").get("password")
    except Exception:
        return None


def _policy(
    name: str,
    description: str,
    rule: Rule,
    level: EnforcementLevel = EnforcementLevel.MANDATORY,
    config_schema: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=level, config_schema=config_schema
    )


def _own(rule: Callable[[str, Mapping[str, Any]], list[str]]) -> Rule:
    """The rule, for resources the program itself declares (third-party manifests go to the advisory policy)."""
    return lambda args: [] if rules.is_third_party(args.urn) else rule(args.resource_type, args.props)


def _third_party(args: ResourceValidationArgs) -> list[str]:
    if not rules.is_third_party(args.urn):
        return []
    return rules.container_resources(args.resource_type, args.props) + rules.container_non_root(
        args.resource_type, args.props
    )


def _gpu(args: ResourceValidationArgs) -> list[str]:
    gpu_stacks = args.get_config().get("gpuStacks") or DEFAULT_GPU_STACKS
    allowed = rules.gpu_allowed_for(current_stack(), gpu_stacks)
    return rules.gpu_only_on_gpu_stack(args.resource_type, args.props, allowed)


def _password(args: ResourceValidationArgs) -> list[str]:
    return rules.registry_password_exposures(args.resource_type, args.props, stack_registry_password())


POLICIES = [
    _policy(
        "no-cluster-admin-binding",
        "No (Cluster)RoleBinding may grant the cluster-admin ClusterRole.",
        lambda args: rules.no_cluster_admin_binding(args.resource_type, args.props),
    ),
    _policy(
        "workload-resources",
        "Every container and pipeline worker the stack declares has CPU and memory requests and limits.",
        _own(rules.container_resources),
    ),
    _policy(
        "workload-non-root",
        "Every container the stack declares runs as non-root (runAsNonRoot or a runAsUser above 0); "
        "pipelines run as root only where documented.",
        _own(rules.container_non_root),
    ),
    _policy(
        "third-party-workload-hardening",
        "Third-party manifests (kustomize/yaml bundles) should set requests, limits and non-root too.",
        _third_party,
        EnforcementLevel.ADVISORY,
    ),
    _policy(
        "pinned-images",
        "No image uses :latest, a moving tag, or no tag at all.",
        lambda args: rules.pinned_images(args.resource_type, args.props),
    ),
    _policy(
        "gpu-only-on-gpu-stack",
        "Only the GPU stack may request GPUs.",
        _gpu,
        config_schema=PolicyConfigSchema(
            properties={
                "gpuStacks": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_GPU_STACKS},
            }
        ),
    ),
    _policy(
        "tfjob-rights-least-privilege",
        "TFJob rights only through a namespaced Role with create/get/watch/delete, and Secrets there only "
        "create/delete (the training operator's own manifests aside).",
        _own(rules.tfjob_rights_least_privilege),
    ),
    _policy(
        "registry-password-not-plain",
        "Registry credentials live only in the dockerconfigjson Secret (and the image push), never in plain inputs.",
        _password,
    ),
]
