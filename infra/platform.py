"""The namespace and the registry credentials every other component uses."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.labels import labels


@dataclass(frozen=True)
class PlatformNamespaceArgs:
    name: str


class PlatformNamespace(pulumi.ComponentResource):
    """One namespace for the whole system, so Seldon can watch only it and destroy removes it cleanly."""

    def __init__(self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:PlatformNamespace", name, None, opts)
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.name, labels={
                **labels("namespace"),
                # Baseline (not restricted): export runs kaniko as root to build the serving image.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            }),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.name: pulumi.Output[str] = self.namespace.metadata.apply(lambda m: m.name)
        self.register_outputs({"name": self.name})


@dataclass(frozen=True)
class RegistrySecretArgs:
    namespace: pulumi.Input[str]
    server: str
    username: str
    password: pulumi.Input[str]  # a secret Output
    secret_name: str = "registry-credentials"


def dockerconfigjson(server: str, username: str, password: str) -> str:
    """The `.dockerconfigjson` document kubelet and kaniko read."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password, "auth": auth}}})


class RegistrySecret(pulumi.ComponentResource):
    """Registry credentials for export (push) and serving (imagePullSecrets); the password stays a secret."""

    def __init__(self, name: str, args: RegistrySecretArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("issue-titles:infra:RegistrySecret", name, None, opts)
        # Built inside apply so the secret-ness of the password carries over to the whole document.
        config_json = pulumi.Output.secret(
            pulumi.Output.from_input(args.password).apply(
                lambda password: dockerconfigjson(args.server, args.username, password)
            )
        )
        self.secret = k8s.core.v1.Secret(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.secret_name, namespace=args.namespace,
                                                labels=labels("registry")),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": config_json},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["data", "stringData"]),
        )
        self.secret_name: pulumi.Output[str] = self.secret.metadata.apply(lambda m: m.name)
        self.register_outputs({"secret_name": self.secret_name})
