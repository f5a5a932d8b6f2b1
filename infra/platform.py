"""The namespaces and the registry credentials every other component uses."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Protocol, cast

import pulumi
import pulumi_kubernetes as k8s

from infra.labels import labels

POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")


def pachyderm_pod_security(cluster: str) -> str:
    """The Pod Security level the Pachyderm namespace (pachd, pachw, etcd, postgres, pipeline workers) can live with.

    On minikube the chart deploys with `deployTarget: LOCAL`, and then pachd and pachw mount their storage as a
    `hostPath` volume (pachyderm/pachyderm 2.12.x etc/helm/pachyderm/templates/pachd/deployment.yaml and
    pachw/deployment.yaml, `pach-disk`), and so does every pipeline worker (src/server/pps/server/worker_rc.go: the
    `pach-disk` hostPath volume whenever STORAGE_HOST_PATH is set). `baseline` forbids hostPath volumes, so LOCAL
    needs `privileged`. On GKE the storage is the bucket, nothing mounts a host path, and `baseline` holds.
    """
    return "privileged" if cluster == "minikube" else "baseline"


@dataclass(frozen=True)
class PlatformNamespaceArgs:
    name: str
    # The Pod Security Standard the namespace enforces (pod-security.kubernetes.io/enforce); warnings and audit
    # entries are always against `restricted`, so anything short of it stays visible.
    pod_security: str = "baseline"
    extra_labels: dict[str, str] = field(default_factory=dict)
    component: str = "namespace"


def _created_name(metadata: k8s.meta.v1.outputs.ObjectMeta) -> str:
    """metadata.name of an object this module creates: typed optional (an object may ask for a generateName), but
    every object here is created with its name set."""
    return cast(str, metadata.name)


class PlatformNamespace(pulumi.ComponentResource):
    """A namespace the program owns, with its Pod Security level, so `pulumi destroy` removes it cleanly."""

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:PlatformNamespace", name, None, opts)
        if args.pod_security not in POD_SECURITY_LEVELS:
            raise ValueError(f"pod_security must be one of {', '.join(POD_SECURITY_LEVELS)}, not {args.pod_security!r}")
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.name,
                labels={
                    **labels(args.component),
                    **args.extra_labels,
                    "pod-security.kubernetes.io/enforce": args.pod_security,
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name: pulumi.Output[str] = self.namespace.metadata.apply(_created_name)
        self.register_outputs({"name": self.name})


class RegistryCredentials(Protocol):
    """The registry the images go to and come from, and how to log in to it (`RegistryConfig` of infra/config.py):
    the stage image's push and each namespace's pull secret use the same three values."""

    @property
    def server(self) -> str: ...

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> pulumi.Input[str]: ...  # a secret Output


@dataclass(frozen=True)
class RegistrySecretArgs:
    namespace: pulumi.Input[str]
    registry: RegistryCredentials
    secret_name: str = "registry-credentials"


def dockerconfigjson(server: str, username: str, password: str) -> str:
    """The `.dockerconfigjson` document kubelet and kaniko read."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password, "auth": auth}}})


class RegistrySecret(pulumi.ComponentResource):
    """Registry credentials for export (push) and serving (imagePullSecrets), one copy per namespace that uses them
    (a pod can only name a Secret of its own namespace); the password stays a secret."""

    def __init__(self, name: str, args: RegistrySecretArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:RegistrySecret", name, None, opts)
        # Built inside apply so the secret-ness of the password carries over to the whole document.
        registry = args.registry
        config_json: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.from_input(registry.password).apply(
                lambda password: dockerconfigjson(registry.server, registry.username, password)
            )
        )
        self.secret = k8s.core.v1.Secret(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.secret_name, namespace=args.namespace, labels=labels("registry")
            ),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": config_json},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        self.secret_name: pulumi.Output[str] = self.secret.metadata.apply(_created_name)
        self.register_outputs({"secret_name": self.secret_name})
