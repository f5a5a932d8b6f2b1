"""`stages export` against the real distribution registry (the `docker-registry` binary: distribution/distribution,
Debian's `docker-registry` package, 2.8.x) where it is installed; skipped elsewhere.

The in-process fake (fake_registry.py) is this project's reading of the spec; this runs the same push against the
registry implementation Docker Hub's own API descends from, with htpasswd (Basic) auth, cross-repository mounts
and the registry's own digest and manifest checks, then reads the image back through its API.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time

import pytest
import requests

from issue_titles.export import SERVE_CMD, run_export
from issue_titles.registry import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Credentials, RegistryClient
from tests.stages.test_export_registry import JOB, PASSWORD, make_bundle, schema_validator, tar_gz

BINARY = shutil.which("docker-registry")
pytestmark = pytest.mark.skipif(BINARY is None, reason="the docker-registry binary (distribution 2.x) is not installed")
# htpasswd -Bbn robot <PASSWORD> (bcrypt: the only scheme the registry's htpasswd auth accepts)
HTPASSWD = "robot:$2y$05$emvAk2TgFmVbxJqmYe5aYOejKwzmapvFCH6C5c3ZC2zSMl4/0XuYG\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def real_registry(tmp_path):
    port = free_port()
    (tmp_path / "htpasswd").write_text(HTPASSWD)
    config = tmp_path / "config.yml"
    config.write_text(
        json.dumps(
            {  # YAML is a superset of JSON
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
                "auth": {"htpasswd": {"realm": "issue-titles-test", "path": str(tmp_path / "htpasswd")}},
            }
        )
    )
    assert BINARY is not None  # the module is skipped without it
    process = subprocess.Popen([BINARY, "serve", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    host = f"127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(f"http://{host}/v2/", timeout=1).status_code == 401:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("docker-registry did not start: " + process.stdout.read().decode(errors="replace")[-2000:])
    try:
        yield host
    finally:
        process.terminate()
        process.wait(timeout=10)


def seed(host: str) -> str:
    """Push a two-layer base image behind an OCI index with this project's client; returns its reference."""
    client = RegistryClient(host, Credentials("robot", PASSWORD), scopes=[])
    layers, diff_ids = [], []
    for files in ({"usr/bin/stages": b"#!/bin/sh\n"}, {"opt/x.py": b"print(1)\n"}):
        blob, diff_id = tar_gz(files)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_bytes("team/stages", digest, blob)
        layers.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": "10001:10001"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_bytes("team/stages", config_digest, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "layers": layers,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        }
    ).encode()
    manifest_digest = client.put_manifest("team/stages", "amd64", manifest, OCI_MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    client.put_manifest("team/stages", "cpu", index, OCI_INDEX)
    return f"{host}/team/stages:cpu"


def test_export_pushes_to_the_real_registry_and_the_image_reads_back(real_registry, tmp_path):
    base = seed(real_registry)
    bundle = make_bundle(tmp_path / "bundle", base)
    secret = tmp_path / ".dockerconfigjson"
    secret.write_text(
        json.dumps({"auths": {real_registry: {"auth": base64.b64encode(f"robot:{PASSWORD}".encode()).decode()}}})
    )
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PACH_JOB_ID": JOB, "REGISTRY_AUTH_FILE": str(secret)}

    record = run_export(bundle, tmp_path / "out", f"{real_registry}/team/serving", env=env)

    client = RegistryClient(real_registry, Credentials("robot", PASSWORD), scopes=[])
    body, media_type, digest = client.get_manifest("team/serving", JOB)
    manifest = json.loads(body)
    assert (media_type, digest) == (OCI_MANIFEST, record["digest"])
    schema_validator("image-manifest-schema.json").validate(manifest)
    config = json.loads(client.get_blob("team/serving", manifest["config"]["digest"]))
    schema_validator("config-schema.json").validate(config)
    assert config["config"]["Cmd"] == SERVE_CMD and config["config"]["User"] == "10001:10001"
    layer = client.get_blob("team/serving", manifest["layers"][-1]["digest"])
    assert config["rootfs"]["diff_ids"][-1] == "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as archive:
        assert "model/provenance.json" in archive.getnames()


def test_the_real_registry_refuses_a_push_without_credentials(real_registry, tmp_path):
    base = seed(real_registry)
    bundle = make_bundle(tmp_path / "bundle", base)
    with pytest.raises(
        Exception,
        match=f"cannot push {real_registry}/team/serving:{JOB}: registry {real_registry}: "
        f"authentication required: no credentials for {real_registry}",
    ):
        run_export(
            bundle,
            tmp_path / "out",
            f"{real_registry}/team/serving",
            env={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PACH_JOB_ID": JOB},
        )
    assert not (tmp_path / "out").exists()
