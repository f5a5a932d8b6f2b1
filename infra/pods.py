"""How every pod the program itself defines runs: as the stage image's non-root user, on a read-only root."""

from __future__ import annotations

from typing import Any

from pipelines.contract import STAGE_UID

TMP_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}  # the one writable place (matplotlib, TensorFlow caches)


def pod_security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": STAGE_UID, "fsGroup": STAGE_UID}


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": STAGE_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
