"""The Pod Security Standards checks that matter for what this program runs, as the admission plugin applies them.

A transcription of kubernetes/pod-security-admission v0.36.2 policy/check_*.go (the `baseline` and `restricted`
levels, latest version), restricted to the fields our pods and the charts' pods use. Sysctls, procMount, SELinux,
AppArmor and Windows options are left out: nothing here sets them.
"""

from __future__ import annotations

from typing import Any

# check_capabilities_baseline.go: capabilities_allowed_1_0.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
# check_restrictedVolumes.go: the volume sources `restricted` allows.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
LEVELS = ("privileged", "baseline", "restricted")


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]


def _context(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def _baseline(pod: dict[str, Any]) -> list[str]:
    found = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):  # check_hostNamespaces.go
        if pod.get(field):
            found.append(f"{field}=true")
    for volume in pod.get("volumes") or []:  # check_hostPathVolumes.go
        if "hostPath" in volume:
            found.append(f"hostPath volume {volume['name']!r}")
    pod_seccomp = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":  # check_seccompProfile_baseline.go
        found.append("pod seccompProfile Unconfined")
    for container in _containers(pod):
        context, name = _context(container), container.get("name")
        if context.get("privileged"):  # check_privileged.go
            found.append(f"container {name!r} privileged")
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:  # check_capabilities_baseline.go
            found.append(f"container {name!r} adds {sorted(added - BASELINE_CAPABILITIES)}")
        if any(port.get("hostPort") for port in container.get("ports") or []):  # check_hostPorts.go
            found.append(f"container {name!r} uses a hostPort")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"container {name!r} seccompProfile Unconfined")
    return found


def _restricted(pod: dict[str, Any]) -> list[str]:
    found = []
    pod_context = pod.get("securityContext") or {}
    for volume in pod.get("volumes") or []:  # check_restrictedVolumes.go
        kinds = set(volume) - {"name"}
        if kinds and not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']!r} of type {sorted(kinds)}")
    if pod_context.get("runAsUser") == 0:  # check_runAsUser.go
        found.append("pod runAsUser 0")
    pod_non_root = pod_context.get("runAsNonRoot")
    if pod_non_root is False:
        found.append("pod runAsNonRoot false")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for container in _containers(pod):
        context, name = _context(container), container.get("name")
        if context.get("allowPrivilegeEscalation") is not False:  # check_allowPrivilegeEscalation.go
            found.append(f"container {name!r} must set allowPrivilegeEscalation=false")
        non_root = context.get("runAsNonRoot")  # check_runAsNonRoot.go: pod-level true or every container true
        if non_root is False or (non_root is None and pod_non_root is not True):
            found.append(f"container {name!r} must set runAsNonRoot=true (or the pod must)")
        if context.get("runAsUser") == 0:
            found.append(f"container {name!r} runAsUser 0")
        seccomp = (context.get("seccompProfile") or {}).get("type")  # check_seccompProfile_restricted.go
        if seccomp not in ("RuntimeDefault", "Localhost") and not (
            seccomp is None and pod_seccomp in ("RuntimeDefault", "Localhost")
        ):
            found.append(f"container {name!r} must set seccompProfile RuntimeDefault or Localhost (or the pod must)")
        capabilities = context.get("capabilities") or {}  # check_capabilities_restricted.go: exactly "ALL"
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f'container {name!r} must set capabilities.drop=["ALL"]')
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"container {name!r} adds capabilities other than NET_BIND_SERVICE")
    return found


def violations(level: str, pod: dict[str, Any]) -> list[str]:
    """What the `level` Pod Security Standard refuses in `pod` (a PodSpec); empty when admitted."""
    if level not in LEVELS:
        raise ValueError(f"unknown Pod Security level {level!r}")
    if level == "privileged":
        return []
    found = _baseline(pod)
    if level == "restricted":
        found += _restricted(pod)
    return found
