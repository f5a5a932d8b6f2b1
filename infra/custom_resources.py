"""Custom resources that pulumi-kubernetes waits for, and whose `status` the program can read.

pulumi-kubernetes does not wait for a custom resource unless it carries `pulumi.com/waitFor` (added in v4.18.0;
the RFC 9535 JSONPath filters with `||` used here came in v4.24.0, hence `pulumi-kubernetes>=4.24` in
requirements.txt) and gives up after `pulumi.com/timeoutSeconds` (pulumi/pulumi-kubernetes
provider/pkg/metadata/annotations.go and overrides.go; CHANGELOG.md 4.18.0 and 4.24.0).

`apiextensions.CustomResource` resolves only the properties it was constructed with (api_version, kind, metadata,
spec), so the `status` the provider returns after the wait would be dropped; this subclass declares it too.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.labels import labels

WAIT_FOR = "pulumi.com/waitFor"
TIMEOUT_SECONDS = "pulumi.com/timeoutSeconds"


def wait_annotations(wait_for: str, timeout_seconds: int) -> dict[str, str]:
    """The two annotations that make the provider wait for `wait_for`, and fail after `timeout_seconds`."""
    return {WAIT_FOR: wait_for, TIMEOUT_SECONDS: str(timeout_seconds)}


def awaited_metadata(
    name: str, namespace: pulumi.Input[str], component: str, wait_for: pulumi.Input[str], timeout_seconds: int
) -> k8s.meta.v1.ObjectMetaArgs:
    """The metadata of a custom resource the program waits for: its name, our labels and the two wait annotations
    (`wait_for` may be an Output, when what to wait for depends on the spec)."""
    return k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels=labels(component),
        annotations=pulumi.Output.from_input(wait_for).apply(
            lambda condition: wait_annotations(condition, timeout_seconds)
        ),
    )


class CustomResourceWithStatus(k8s.apiextensions.CustomResource):
    """`apiextensions.CustomResource` plus a `status` output (the object's status once the wait is over)."""

    status: pulumi.Output[Any]

    def _internal_init(
        self,
        resource_name: str,
        api_version: str,
        kind: str,
        opts: pulumi.ResourceOptions | None = None,
        metadata: Any = None,
        spec: Any = None,
        __props__: Any = None,
    ) -> None:
        if opts is None or opts.id is not None or __props__ is not None:
            # A lookup of an existing object: nothing to add.
            super()._internal_init(
                resource_name, api_version, kind, opts=opts, metadata=metadata, spec=spec, __props__=__props__
            )
            return
        props = {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec, "status": None}
        pulumi.CustomResource.__init__(self, f"kubernetes:{api_version}:{kind}", resource_name, props, opts)
