"""`stages export`: push the serving image (the stage image plus one layer holding the bundle), tagged with the job ID.

No image builder runs: the serving image is the bundle's base image (the stage image, `base_image` in
provenance.json) with one more layer appended through the registry API (issue_titles.registry). The layer is a
deterministic tar.gz of the bundle under /model, owned by the image's non-root user; the new image config appends
that layer's diff_id and a history entry, runs `stages serve --model /model` as the same non-root user, and carries
labels (and, for OCI manifests, annotations) naming the job, the provenance digest and the base image. The manifest
is pushed as `<repo>:<PACH_JOB_ID>`. So the export step runs as the stage image's normal non-root user, like every
other step, and needs neither root nor a writable root filesystem (only a temporary folder for the layer).

When it pushes: inside a Kubernetes cluster, recognised by KUBERNETES_SERVICE_HOST (the kubelet sets it in every
container, so every Pachyderm worker has it; localpach sets PACH_JOB_ID too, so that variable cannot tell the two
apart). There a push that fails is an error: one line naming the image, the registry and the cause, and a
non-zero exit; image.json is only written after the registry has accepted the manifest. Anywhere else nothing is
pushed: image.json says so (`pushed: false` with the reason) and still records the reference, the bundle and the
digests the layer would have, so the local mode ends with a traceable record.

Credentials: the pipeline mounts the registry secret and points REGISTRY_AUTH_FILE at its `.dockerconfigjson`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from issue_titles.atomic import atomic_output_dir
from issue_titles.contract import (
    ENTRYPOINT,
    IMAGE_RECORD,
    METRICS_PORT,
    MODEL_DIR,
    PROVENANCE,
    SERVE_CMD,
    SERVING_PORT,
    SERVING_UID,
)
from issue_titles.errors import StageError
from issue_titles.jsonio import read_json, write_json
from issue_titles.provenance import sha256_file, verify_bundle
from issue_titles.registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Credentials,
    Reference,
    RegistryClient,
    RegistryError,
    copy_blob,
    load_credentials,
    parse_reference,
    sha256_digest,
)

# The serving image's user, ports, bundle folder and command are the bundle's Dockerfile's (issue_titles.contract).
PLATFORM = {"os": "linux", "architecture": "amd64"}  # the stage image's platform (stages/Dockerfile, GKE nodes)
LABEL_PREFIX = "issue-titles."


def image_reference(image: str, bundle: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """(reference, where the tag came from): an explicit tag, else PACH_JOB_ID, else the bundle's digest.

    `--image` is REPO or REPO:TAG in registry.parse_reference's grammar (a registry port is not a tag); the reference
    keeps the repository as written."""
    try:
        parsed = parse_reference(image)
    except StageError:
        parsed = None
    if parsed is None or parsed.digest is not None:
        raise StageError(f"--image '{image}' is not a valid image reference (expected REPO or REPO:TAG, lower-case)")
    if parsed.tag:
        return image, "--image"
    if env.get("PACH_JOB_ID"):
        return f"{image}:{env['PACH_JOB_ID']}", "PACH_JOB_ID"
    return f"{image}:bundle-{sha256_file(bundle / PROVENANCE)[:12]}", "provenance.json sha256 (no PACH_JOB_ID)"


def in_cluster(env: Mapping[str, str]) -> bool:
    """Inside a Kubernetes pod (a Pachyderm worker): the kubelet sets KUBERNETES_SERVICE_HOST in every container.

    The same test as kubernetes/client-go's rest.InClusterConfig (rest/config.go). Not PACH_JOB_ID: localpach sets
    it too, and a local run must not fail for want of a registry.
    """
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


# -- the layer ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str  # sha256 of the tar.gz: what the manifest names and the registry stores
    diff_id: str  # sha256 of the uncompressed tar: what the config's rootfs.diff_ids lists
    size: int


class _HashingWriter:
    """Forwards writes to a file and hashes them: the uncompressed tar's digest without a second pass."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.target.write(data)


def build_layer(bundle: Path, target: Path, uid: int, gid: int, mtime: int) -> Layer:
    """The bundle as a layer: `model/...` entries in sorted order, owned by uid:gid, mode 0755/0644, one mtime.

    image-spec v1.1.1 layer.md: a layer is a tar archive, gzip-compressed for `...tar+gzip`; config.md: its
    DiffID is the sha256 of the uncompressed tar. Fixed ownership, modes, mtimes, order, PAX headers without user
    or group names and a gzip header without name or time make the same bundle give the same bytes.
    """
    bundle = Path(bundle)
    entries = sorted(bundle.rglob("*"), key=lambda path: path.relative_to(bundle).as_posix())
    for path in entries:
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise StageError("the bundle may hold only files and folders (no links or devices)", path=path)

    def info(name: str, is_dir: bool, size: int = 0) -> tarfile.TarInfo:
        item = tarfile.TarInfo(name)
        item.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        item.mode = 0o755 if is_dir else 0o644
        item.uid, item.gid, item.uname, item.gname = uid, gid, "", ""
        item.mtime = mtime
        item.size = size
        return item

    with open(target, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as compressed:
            writer = _HashingWriter(compressed)  # type: ignore[arg-type]
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:  # type: ignore[call-overload]
                archive.addfile(info(MODEL_DIR, is_dir=True))
                for path in entries:
                    name = f"{MODEL_DIR}/{path.relative_to(bundle).as_posix()}"
                    if path.is_dir():
                        archive.addfile(info(name, is_dir=True))
                    else:
                        with open(path, "rb") as handle:
                            archive.addfile(info(name, is_dir=False, size=path.stat().st_size), handle)
    return Layer(
        Path(target), "sha256:" + sha256_file(target), "sha256:" + writer.hash.hexdigest(), Path(target).stat().st_size
    )


# -- the image config and manifest -------------------------------------------------------------------------------------


def serving_user(base_config: Mapping[str, Any]) -> tuple[str, int, int]:
    """(User, uid, gid): the base image's numeric non-root user, else SERVING_UID (as the bundle's Dockerfile says).

    A numeric user is what lets the kubelet enforce runAsNonRoot (it cannot check a user name against the image).
    """
    user = str((base_config.get("config") or {}).get("User") or "")
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    if match and int(match.group(1)) != 0:
        uid = int(match.group(1))
        return user, uid, int(match.group(2)) if match.group(2) else uid
    return f"{SERVING_UID}:{SERVING_UID}", SERVING_UID, SERVING_UID


def serving_config(
    base_config: Mapping[str, Any], layer: Layer, user: str, labels: Mapping[str, str], created: str, comment: str
) -> dict[str, Any]:
    """The base config plus the layer: diff_id and history appended, serve /model as the non-root user.

    image-spec v1.1.1 config.md: rootfs.diff_ids lists the layers in order (bottom first), history has one
    entry per layer (entries with `empty_layer` excepted), config.User/Entrypoint/Cmd/ExposedPorts/Labels.
    """
    config = json.loads(json.dumps(base_config))  # a deep copy that keeps only JSON
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
        raise StageError("the base image config has no rootfs.diff_ids list")
    rootfs["diff_ids"].append(layer.diff_id)
    run = config.setdefault("config", {}) or {}
    config["config"] = run
    run["User"] = user
    run["Entrypoint"] = list(ENTRYPOINT)
    run["Cmd"] = list(SERVE_CMD)
    run["ExposedPorts"] = {**(run.get("ExposedPorts") or {}), f"{SERVING_PORT}/tcp": {}, f"{METRICS_PORT}/tcp": {}}
    run["Labels"] = {**(run.get("Labels") or {}), **labels}
    config["created"] = created
    config["history"] = [*(config.get("history") or []), {"created": created, "created_by": comment}]
    return config


def image_labels(
    provenance: Mapping[str, Any],
    provenance_sha256: str,
    job_id: str | None,
    base: Reference,
    base_digest: str | None,
    created: str,
) -> dict[str, str]:
    """OCI pre-defined keys (image-spec v1.1.1 annotations.md) plus this project's, namespaced with LABEL_PREFIX."""
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": str(provenance.get("model_name") or "issue-titles"),
        "org.opencontainers.image.base.name": str(base),
        f"{LABEL_PREFIX}provenance.sha256": provenance_sha256,
    }
    if base_digest:
        labels["org.opencontainers.image.base.digest"] = base_digest
    if job_id:
        labels[f"{LABEL_PREFIX}pachyderm.job-id"] = job_id
    code = provenance.get("code")
    if not isinstance(code, dict):
        code = {}
    if code.get("source_sha256"):
        labels[f"{LABEL_PREFIX}code.source-sha256"] = str(code["source_sha256"])
    if code.get("version"):
        labels["org.opencontainers.image.version"] = str(code["version"])
    return labels


def _descriptor(media_type: str, data_digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": data_digest, "size": size}


def _canonical(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


def choose_platform(index: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The linux/amd64 entry of an OCI image index or Docker manifest list (image-spec v1.1.1 image-index.md)."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        entries = []
    seen = []
    for entry in entries:
        platform = entry.get("platform") or {}
        seen.append(f"{platform.get('os', '?')}/{platform.get('architecture', '?')}")
        matches = all(platform.get(key) == value for key, value in PLATFORM.items())
        if matches and entry.get("mediaType", OCI_MANIFEST) in MANIFEST_TYPES:
            return entry
    raise StageError(f"base image {where} has no linux/amd64 image (platforms: {', '.join(seen) or 'none'})")


@dataclass(frozen=True)
class BaseImage:
    reference: Reference
    digest: str  # of the single-platform manifest the layer goes on
    media_type: str
    manifest: dict[str, Any]
    config: dict[str, Any]


def resolve_base(client: RegistryClient, reference: Reference) -> BaseImage:
    """Fetch the base manifest (following an index to linux/amd64) and its config, verifying digests."""
    body, media_type, digest = client.get_manifest(reference.repository, reference.manifest_reference)
    manifest = json.loads(body)
    if media_type in INDEX_TYPES:
        entry = choose_platform(manifest, str(reference))
        body, media_type, digest = client.get_manifest(reference.repository, entry["digest"])
        manifest = json.loads(body)
    if media_type not in MANIFEST_TYPES:
        raise StageError(f"base image {reference}: unsupported manifest type {media_type or 'none'!r}")
    config_descriptor = manifest.get("config") or {}
    config = json.loads(client.get_blob(reference.repository, config_descriptor["digest"]))
    layers = manifest.get("layers") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise StageError(f"base image {reference}: its config lists {len(diff_ids)} diff_ids for {len(layers)} layers")
    return BaseImage(reference, digest, media_type, manifest, config)


# -- the push ---------------------------------------------------------------------------------------------------------


def _credentials(env: Mapping[str, str]) -> dict[str, Credentials]:
    auth_file = env.get("REGISTRY_AUTH_FILE")
    return load_credentials(Path(auth_file)) if auth_file else {}


def bundle_base_image(bundle: Path, provenance: Mapping[str, Any]) -> str:
    """The image the bundle was built for: provenance's base_image, else the FROM of its Dockerfile."""
    if isinstance(provenance.get("base_image"), str) and provenance["base_image"]:
        return provenance["base_image"]
    for line in (bundle / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.strip().upper().startswith("FROM "):
            return line.split()[1]
    raise StageError("names no base image (no base_image in provenance.json, no FROM in Dockerfile)", path=bundle)


def push_serving_image(
    bundle: Path,
    target: Reference,
    base_ref: Reference,
    labels_for: Callable[[BaseImage], dict[str, str]],
    created: str,
    mtime: int,
    comment: str,
    credentials: Mapping[str, Credentials],
    scratch: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Append the bundle to the base image and push it as `target`; returns what image.json records."""
    same_registry = base_ref.registry == target.registry
    target_scopes = [f"repository:{target.repository}:pull,push"]
    base_scopes = [f"repository:{base_ref.repository}:pull"]
    target_client = RegistryClient(
        target.registry, credentials.get(target.registry), scopes=target_scopes + (base_scopes if same_registry else [])
    )
    base_client = (
        target_client
        if same_registry
        else RegistryClient(base_ref.registry, credentials.get(base_ref.registry), scopes=base_scopes)
    )

    base = resolve_base(base_client, base_ref)
    log(f"base image {base_ref} -> {base.digest} ({len(base.manifest['layers'])} layers)")
    user, uid, gid = serving_user(base.config)
    layer = build_layer(bundle, scratch / "layer.tar.gz", uid, gid, mtime)
    docker = base.media_type == DOCKER_MANIFEST
    labels = labels_for(base)
    config = serving_config(base.config, layer, user, labels, created, comment)
    config_bytes = _canonical(config)
    config_digest = sha256_digest(config_bytes)
    layer_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": _descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config_digest, len(config_bytes)),
        "layers": [*base.manifest["layers"], _descriptor(layer_type, layer.digest, layer.size)],
    }
    if not docker:  # Docker's schema 2 has no annotations; OCI manifests carry the same keys as the labels
        manifest["annotations"] = labels

    # Base layers: already there, else mounted from the base repository (same registry), else copied.
    for descriptor in base.manifest["layers"]:
        blob = descriptor["digest"]
        if descriptor.get("urls") or target_client.blob_exists(target.repository, blob):
            continue
        if same_registry:
            location = target_client.mount_blob(target.repository, blob, base_ref.repository)
            if location is None:
                log(f"mounted {blob[:19]} from {base_ref.repository}")
                continue
            copy_blob(base_client, base_ref.repository, target_client, target.repository, descriptor, location)
        else:
            copy_blob(base_client, base_ref.repository, target_client, target.repository, descriptor)
        log(f"copied {blob[:19]} ({descriptor['size']} bytes)")
    if not target_client.blob_exists(target.repository, layer.digest):
        with open(layer.path, "rb") as handle:
            location = target_client.start_upload(target.repository)
            target_client.finish_upload(location, layer.digest, handle, layer.size)
    log(f"layer {layer.digest} ({layer.size} bytes) holds the bundle under /{MODEL_DIR}, owned by {uid}:{gid}")
    if not target_client.blob_exists(target.repository, config_digest):
        target_client.upload_bytes(target.repository, config_digest, config_bytes)
    manifest_bytes = _canonical(manifest)
    digest = target_client.put_manifest(
        target.repository, target.tag or "latest", manifest_bytes, manifest["mediaType"]
    )
    return {
        "digest": digest,
        "media_type": manifest["mediaType"],
        "base_image": str(base_ref),
        "base_digest": base.digest,
        "config_digest": config_digest,
        "layer": {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size},
        "user": user,
    }


def _built_at(provenance: Mapping[str, Any]) -> tuple[str, int]:
    """(RFC 3339 time, Unix time) of the bundle: the layer's mtimes and the config's `created` come from it."""
    text = provenance.get("built_at")
    try:
        moment = datetime.fromisoformat(str(text))
        return moment.isoformat().replace("+00:00", "Z"), int(moment.timestamp())
    except (TypeError, ValueError):
        return "1970-01-01T00:00:00Z", 0


def run_export(
    input_dir: Path,
    output_dir: Path,
    image: str,
    env: Mapping[str, str] | None = None,
) -> dict:
    env = os.environ if env is None else env
    bundle = Path(input_dir).absolute()
    for name in ("Dockerfile", PROVENANCE):
        if not (bundle / name).is_file():
            raise StageError(f"{name} not found (expected the output of `stages build`)", path=bundle / name)
    verify_bundle(bundle)  # never ship a bundle that changed after it was built
    provenance = read_json(bundle / PROVENANCE)
    reference, tag_source = image_reference(image, bundle, env)
    provenance_sha256 = sha256_file(bundle / PROVENANCE)
    job_id = env.get("PACH_JOB_ID")
    base_image = bundle_base_image(bundle, provenance)
    created, mtime = _built_at(provenance)
    comment = f"stages export: bundle at /{MODEL_DIR} (provenance.json sha256 {provenance_sha256})"
    record: dict[str, Any] = {
        "image": reference,
        "pushed": False,
        "reason": None,
        "digest": None,
        "tag_source": tag_source,
        "job_id": job_id,
        "context": str(bundle),
        "provenance_sha256": provenance_sha256,
        "base_image": base_image,
    }

    def log(message: str) -> None:
        print(f"stages export: {message}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="stages-export-") as scratch:
        if in_cluster(env):
            try:
                target = parse_reference(reference)
                base_ref = parse_reference(base_image)
                pushed = push_serving_image(
                    bundle,
                    target,
                    base_ref,
                    lambda base: image_labels(provenance, provenance_sha256, job_id, base_ref, base.digest, created),
                    created,
                    mtime,
                    comment,
                    _credentials(env),
                    Path(scratch),
                    log,
                )
            except StageError as error:
                raise RegistryError(f"cannot push {reference}: {error}") from None
            except (OSError, ValueError, KeyError, TypeError) as error:  # a malformed answer or a full disk
                raise RegistryError(f"cannot push {reference}: {type(error).__name__}: {error}") from None
            record |= {"pushed": True, **pushed}
            log(f"pushed {reference} ({pushed['digest']})")
        else:
            layer = build_layer(bundle, Path(scratch) / "layer.tar.gz", SERVING_UID, SERVING_UID, mtime)
            record["reason"] = "not inside a Kubernetes cluster (KUBERNETES_SERVICE_HOST is unset): nothing was pushed"
            record["layer"] = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}
            log(
                f"{record['reason']}. Recorded {reference} and the bundle layer {layer.digest} in image.json; "
                f"to build the same image by hand: docker build -t {reference} {bundle}"
            )
    with atomic_output_dir(output_dir, step="export", inputs=[input_dir]) as staging:
        write_json(staging / IMAGE_RECORD, record)
    return record
