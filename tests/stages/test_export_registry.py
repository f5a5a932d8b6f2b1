"""`stages export` against an in-process registry: the serving image is the stage image plus one layer, pushed
through the OCI distribution API, tagged with the job ID; in a cluster a push that cannot happen fails the step.

The manifests and configs are validated with the OCI image-spec v1.1.1 JSON schemas (tests/stages/oci_schemas,
see SOURCE.md there); the layer rules come from image-spec v1.1.1 layer.md and config.md (diff_ids are digests of
the uncompressed tar), the API calls from distribution-spec v1.1.1 spec.md (cited in issue_titles/registry.py).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from issue_titles.errors import StageError
from issue_titles.export import SERVE_CMD, SERVING_UID, build_layer, run_export
from issue_titles.provenance import PROVENANCE, REQUIRED_FOR_LOADING, checksums
from issue_titles.registry import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    load_credentials,
    parse_reference,
)
from tests.stages.conftest import run_stages
from tests.stages.fake_registry import FakeRegistry, digest_of

JOB = "0123456789abcdef0123456789abcdef"
PASSWORD = "Registry-Pa55word-9d2e"
BASE_REPO = "team/stages"
TARGET_REPO = "team/serving"
SCHEMAS = Path(__file__).parent / "oci_schemas"


# -- fixtures ----------------------------------------------------------------------------------------------------------


def tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """(gzip bytes, diff_id) of a small layer."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            item = tarfile.TarInfo(name)
            item.size = len(data)
            archive.addfile(item, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), digest_of(raw.getvalue())


def seed_base(
    registry: FakeRegistry,
    repository: str = BASE_REPO,
    docker: bool = False,
    platforms: tuple[str, ...] = ("linux/arm64", "linux/amd64", "unknown/unknown"),
) -> dict:
    """A two-layer stage image behind an index (OCI or Docker list); returns its parts."""
    state = registry.state
    layers, diff_ids = [], []
    for files in ({"usr/bin/stages": b"#!/bin/sh\n"}, {"opt/issue-titles/x.py": b"print(1)\n"}):
        blob, diff_id = tar_gz(files)
        layers.append(
            {
                "mediaType": DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP,
                "digest": state.add_blob(repository, blob),
                "size": len(blob),
            }
        )
        diff_ids.append(diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-11-01T00:00:00Z",
        "config": {
            "User": "10001:10001",
            "Entrypoint": ["stages"],
            "Cmd": ["--help"],
            "WorkingDir": "/tmp",
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Labels": {"base.label": "kept"},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created_by": "layer one"},
            {"created_by": "ENV x=y", "empty_layer": True},
            {"created_by": "layer two"},
        ],
    }
    config_bytes = json.dumps(config).encode()
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
            "digest": state.add_blob(repository, config_bytes),
            "size": len(config_bytes),
        },
        "layers": layers,
    }
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    manifest_digest = state.add_manifest(repository, None, manifest_bytes, manifest["mediaType"])
    entries = []
    for platform in platforms:
        os_name, architecture = platform.split("/")
        digest = manifest_digest if platform == "linux/amd64" else digest_of(platform.encode())
        entries.append(
            {
                "mediaType": manifest["mediaType"],
                "digest": digest,
                "size": len(manifest_bytes),
                "platform": {"os": os_name, "architecture": architecture},
            }
        )
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": entries,
    }
    if not docker:
        schema_validator("image-index-schema.json").validate(index)  # the fixture itself is a valid OCI index
    index_bytes = json.dumps(index).encode()
    index_digest = state.add_manifest(repository, "cpu", index_bytes, index["mediaType"])
    return {
        "manifest": manifest,
        "manifest_digest": manifest_digest,
        "config": config,
        "index_digest": index_digest,
        "reference": f"{registry.host}/{repository}@{index_digest}",
    }


def make_bundle(folder: Path, base_image: str) -> Path:
    """A bundle as `stages build` leaves it (files, Dockerfile, provenance with checksums), without training."""
    folder.mkdir(parents=True)
    for name in REQUIRED_FOR_LOADING:
        (folder / name).write_bytes(f"content of {name}\n".encode())
    (folder / "metrics.json").write_text('{"rouge_l": 0.3}\n')
    (folder / "model-settings.json").write_text('{"name": "issue-summarization"}\n')
    (folder / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /model\n")
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.txt").write_text("nested\n")
    provenance = {
        "model_name": "issue-summarization",
        "base_image": base_image,
        "built_at": "2026-11-30T06:00:00+00:00",
        "code": {"version": "0.1.0", "source_sha256": "ab" * 32},
        "files": checksums(folder),
    }
    (folder / PROVENANCE).write_text(json.dumps(provenance, indent=2))
    return folder


def auth_file(tmp_path: Path, *hosts: str, password: str = PASSWORD) -> Path:
    token = base64.b64encode(f"robot:{password}".encode()).decode()
    path = tmp_path / "secret" / ".dockerconfigjson"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"auths": {host: {"auth": token} for host in hosts}}))
    return path


@pytest.fixture
def registry():
    with FakeRegistry() as server:
        server.state.username, server.state.password = "robot", PASSWORD
        yield server


def cluster_env(secret: Path | None) -> dict[str, str]:
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PACH_JOB_ID": JOB}
    if secret is not None:
        env["REGISTRY_AUTH_FILE"] = str(secret)
    return env


def export(registry: FakeRegistry, tmp_path: Path, base: dict, target_host: str | None = None) -> dict:
    bundle = make_bundle(tmp_path / "bundle", base["reference"])
    secret = auth_file(tmp_path, registry.host, *([target_host] if target_host else []))
    target = f"{target_host or registry.host}/{TARGET_REPO}"
    return run_export(bundle, tmp_path / "out", target, env=cluster_env(secret))


def pushed(registry: FakeRegistry) -> tuple[dict, bytes, dict]:
    body, media_type = registry.manifest(TARGET_REPO, JOB)
    manifest = json.loads(body)
    assert manifest["mediaType"] == media_type
    return manifest, body, json.loads(registry.blob(manifest["config"]["digest"]))


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """A regular file's bytes from a layer (extractfile answers None only for what is not a regular file)."""
    handle = archive.extractfile(member)
    assert handle is not None, member.name
    return handle.read()


def schema_validator(name: str) -> jsonschema.Draft4Validator:
    """Each `$ref` resolves to the vendored file of the same name, wherever the schemas' `id`s put the base URI."""

    def retrieve(uri: str) -> referencing.Resource:
        document = json.loads((SCHEMAS / uri.rsplit("/", 1)[-1]).read_text())
        return referencing.Resource.from_contents(document, default_specification=referencing.jsonschema.DRAFT4)

    schema = json.loads((SCHEMAS / name).read_text())
    # referencing's attrs stub (_attrs.pyi) hides the field's alias, so mypy knows only `_retrieve`; `retrieve=` is
    # the documented argument.
    registry = referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]
    return jsonschema.Draft4Validator(schema, registry=registry)


# -- what is pushed ----------------------------------------------------------------------------------------------------


def test_the_serving_image_is_tagged_with_the_job_id_and_image_json_records_its_digest(registry, tmp_path):
    base = seed_base(registry)
    record = export(registry, tmp_path, base)
    _, body, _ = pushed(registry)
    assert record["pushed"] is True
    assert record["image"] == f"{registry.host}/{TARGET_REPO}:{JOB}"
    assert record["digest"] == digest_of(body)
    assert record["base_digest"] == base["manifest_digest"]  # the linux/amd64 manifest of the index
    saved = json.loads((tmp_path / "out" / "image.json").read_text())
    assert (
        saved == record and saved["provenance_sha256"] == digest_of((tmp_path / "bundle" / PROVENANCE).read_bytes())[7:]
    )


def test_the_manifest_and_config_are_valid_oci_and_their_descriptors_match_the_blobs(registry, tmp_path):
    base = seed_base(registry)
    export(registry, tmp_path, base)
    manifest, _, config = pushed(registry)
    schema_validator("image-manifest-schema.json").validate(manifest)
    schema_validator("config-schema.json").validate(config)
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["config"]["mediaType"] == OCI_CONFIG
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = registry.blob(descriptor["digest"])
        assert (digest_of(blob), len(blob)) == (descriptor["digest"], descriptor["size"])
    new = manifest["layers"][-1]
    assert manifest["layers"][:-1] == base["manifest"]["layers"]
    assert new["mediaType"] == OCI_LAYER_GZIP
    assert config["rootfs"]["diff_ids"] == [
        *base["config"]["rootfs"]["diff_ids"],
        digest_of(gzip.decompress(registry.blob(new["digest"]))),
    ]


def test_the_new_layer_holds_the_bundle_under_model_owned_by_the_non_root_user(registry, tmp_path):
    export(registry, tmp_path, seed_base(registry))
    manifest, _, _ = pushed(registry)
    with tarfile.open(fileobj=io.BytesIO(registry.blob(manifest["layers"][-1]["digest"])), mode="r:gz") as archive:
        members = archive.getmembers()
        contents = {m.name: _read_member(archive, m) for m in members if m.isfile()}
    bundle = tmp_path / "bundle"
    expected = {f"model/{p.relative_to(bundle).as_posix()}": p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert contents == expected
    assert {"model", "model/extra"} <= {m.name for m in members if m.isdir()}
    assert {(m.uid, m.gid) for m in members} == {(SERVING_UID, SERVING_UID)}
    assert {m.mode for m in members if m.isfile()} == {0o644} and {m.mode for m in members if m.isdir()} == {0o755}


def test_the_config_serves_model_as_the_non_root_user_and_names_job_and_provenance(registry, tmp_path):
    base = seed_base(registry)
    record = export(registry, tmp_path, base)
    manifest, _, config = pushed(registry)
    run = config["config"]
    assert run["User"] == "10001:10001"
    assert (run["Entrypoint"], run["Cmd"]) == (["stages"], SERVE_CMD)
    assert "9000/tcp" in run["ExposedPorts"]
    assert run["Env"] == base["config"]["config"]["Env"] and run["WorkingDir"] == "/tmp"  # the rest is the base's
    labels = run["Labels"]
    assert labels["issue-titles.pachyderm.job-id"] == JOB
    assert labels["issue-titles.provenance.sha256"] == record["provenance_sha256"]
    assert labels["org.opencontainers.image.base.digest"] == base["manifest_digest"]
    assert labels["org.opencontainers.image.base.name"] == base["reference"]
    assert labels["base.label"] == "kept"
    assert manifest["annotations"] == {key: value for key, value in labels.items() if key != "base.label"}
    assert config["history"][:-1] == base["config"]["history"]
    assert record["provenance_sha256"] in config["history"][-1]["created_by"]


def test_the_same_bundle_gives_the_same_layer_digest(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", "registry.example.com/team/stages:cpu")
    first = build_layer(bundle, tmp_path / "one.tar.gz", 10001, 10001, mtime=1_700_000_000)
    for path in bundle.rglob("*"):
        path.touch()  # new file times must not change the layer
    second = build_layer(bundle, tmp_path / "two.tar.gz", 10001, 10001, mtime=1_700_000_000)
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id, second.size)


def test_base_layers_are_mounted_from_the_stage_repository_not_uploaded_again(registry, tmp_path):
    base = seed_base(registry)
    export(registry, tmp_path, base)
    posts = [r for r in registry.state.requests if r.method == "POST"]
    mounted = {r.query["mount"][0] for r in posts if "mount" in r.query}
    assert mounted == {layer["digest"] for layer in base["manifest"]["layers"]}
    assert {r.query["from"][0] for r in posts if "mount" in r.query} == {BASE_REPO}
    uploaded = {r.query["digest"][0] for r in registry.state.requests if r.method == "PUT" and "digest" in r.query}
    assert not uploaded & mounted


def test_blobs_already_in_the_target_are_not_sent_again(registry, tmp_path):
    base = seed_base(registry)
    export(registry, tmp_path / "first", base)
    registry.state.requests.clear()
    export(registry, tmp_path / "second", base)
    assert [r for r in registry.state.requests if r.method in ("POST", "PUT") and "manifests" not in r.path] == []


def test_base_layers_are_copied_when_the_base_lives_in_another_registry(registry, tmp_path):
    base = seed_base(registry)
    with FakeRegistry() as other:
        other.state.username, other.state.password = "robot", PASSWORD
        export(registry, tmp_path, base, target_host=other.host)
        body, _ = other.manifest(TARGET_REPO, JOB)
        for layer in base["manifest"]["layers"]:
            assert other.blob(layer["digest"]) == registry.blob(layer["digest"])
    assert json.loads(body)["layers"][:-1] == base["manifest"]["layers"]


def test_a_docker_schema2_base_gives_a_docker_schema2_image(registry, tmp_path):
    export(registry, tmp_path, seed_base(registry, docker=True))
    manifest, _, _ = pushed(registry)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert manifest["layers"][-1]["mediaType"] == DOCKER_LAYER_GZIP
    assert "annotations" not in manifest  # schema 2 has none; the labels carry the same facts


def test_a_base_without_linux_amd64_is_refused_naming_its_platforms(registry, tmp_path):
    base = seed_base(registry, platforms=("linux/arm64",))
    with pytest.raises(StageError, match="has no linux/amd64 image \\(platforms: linux/arm64\\)"):
        export(registry, tmp_path, base)


# -- authentication ----------------------------------------------------------------------------------------------------


def test_the_token_is_asked_for_with_the_secret_and_push_and_pull_scopes(registry, tmp_path):
    export(registry, tmp_path, seed_base(registry))
    first = registry.state.token_requests[0]
    assert first["service"] == ["fake-registry"]
    assert set(first["scope"]) == {f"repository:{TARGET_REPO}:pull,push", f"repository:{BASE_REPO}:pull"}
    token_calls = [r for r in registry.state.requests if r.path == "/token"]
    assert token_calls[0].headers["Authorization"] == "Basic " + base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
    assert all(
        r.headers.get("Authorization", "").startswith("Bearer ")
        for r in registry.state.requests
        if r.path.startswith("/v2/") and r.path != "/v2/"
    )


def test_the_registry_token_never_goes_to_an_upload_location_on_another_host(registry):
    from issue_titles.registry import Credentials, RegistryClient

    client = RegistryClient(registry.host, Credentials("robot", PASSWORD), scopes=[f"repository:{TARGET_REPO}:push"])
    client.ping()
    with FakeRegistry(auth="none") as storage:  # the spec lets a registry hand uploads to another server
        storage.state.uploads["s1"] = TARGET_REPO
        client.finish_upload(
            f"http://{storage.host}/v2/{TARGET_REPO}/blobs/uploads/s1?_state=x", digest_of(b"blob"), b"blob", 4
        )
        (put,) = storage.state.requests
    assert put.method == "PUT" and "Authorization" not in put.headers
    assert storage.blob(digest_of(b"blob")) == b"blob"


def test_a_basic_auth_registry_gets_basic_credentials(tmp_path):
    with FakeRegistry(auth="basic") as registry:
        registry.state.username, registry.state.password = "robot", PASSWORD
        record = export(registry, tmp_path, seed_base(registry))
    assert record["pushed"] is True


def test_credentials_as_username_and_password_and_docker_hub_keys_are_read(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"username": "hub", "password": "p1"},
                    "https://registry.example.com:5000/": {"auth": base64.b64encode(b"user:p:2").decode()},
                }
            }
        )
    )
    credentials = load_credentials(path)
    assert (credentials["docker.io"].username, credentials["docker.io"].password) == ("hub", "p1")
    assert (credentials["registry.example.com:5000"].username, credentials["registry.example.com:5000"].password) == (
        "user",
        "p:2",
    )


def test_a_broken_auth_entry_is_named_without_its_value(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"registry.example.com": {"auth": "not base64 !!"}}}))
    with pytest.raises(StageError) as error:
        load_credentials(path)
    assert "'registry.example.com': `auth` is not base64 of user:password" in str(error.value)
    assert "not base64 !!" not in str(error.value)


# -- failing in a cluster ----------------------------------------------------------------------------------------------


def cli_export(registry: FakeRegistry, tmp_path: Path, monkeypatch, secret: Path | None) -> int:
    base = seed_base(registry)
    bundle = make_bundle(tmp_path / "bundle", base["reference"])
    for key, value in cluster_env(secret).items():
        monkeypatch.setenv(key, value)
    if secret is None:
        monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return run_stages(
        "export", "--input", bundle, "--output", tmp_path / "out", "--image", f"{registry.host}/{TARGET_REPO}"
    )


def test_in_a_cluster_without_credentials_the_registry_answers_401_and_export_fails(
    registry, tmp_path, monkeypatch, capsys
):
    code = cli_export(registry, tmp_path, monkeypatch, secret=None)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5  # RegistryError: the export could not push
    assert err[-1] == (
        f"stages export: error: cannot push {registry.host}/{TARGET_REPO}:{JOB}: registry {registry.host}: "
        f"token request HTTP 401: no credentials for {registry.host} in REGISTRY_AUTH_FILE"
    )
    assert not (tmp_path / "out").exists()
    assert (TARGET_REPO, JOB) not in registry.state.manifests


def test_in_a_cluster_refused_credentials_fail_the_step(registry, tmp_path, monkeypatch, capsys):
    code = cli_export(registry, tmp_path, monkeypatch, auth_file(tmp_path, registry.host, password="wrong-Pa55"))
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().endswith("token request HTTP 401: the credentials were refused")
    assert "wrong-Pa55" not in err and base64.b64encode(b"robot:wrong-Pa55").decode() not in err
    assert not (tmp_path / "out").exists()


def test_in_a_cluster_an_unreachable_registry_fails_the_step(tmp_path, monkeypatch, capsys):
    with FakeRegistry() as registry:
        host = registry.host
    bundle = make_bundle(tmp_path / "bundle", f"{host}/{BASE_REPO}:cpu")
    for key, value in cluster_env(None).items():
        monkeypatch.setenv(key, value)
    code = run_stages("export", "--input", bundle, "--output", tmp_path / "out", "--image", f"{host}/{TARGET_REPO}")
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert err.startswith(
        f"stages export: error: cannot push {host}/{TARGET_REPO}:{JOB}: registry {host}: cannot connect"
    )


def test_in_a_cluster_a_missing_secret_file_fails_the_step(registry, tmp_path, monkeypatch, capsys):
    code = cli_export(registry, tmp_path, monkeypatch, tmp_path / "not-mounted" / ".dockerconfigjson")
    assert code != 0
    assert "registry credentials file not found (is the registry secret mounted?)" in capsys.readouterr().err


def test_a_successful_push_never_prints_or_stores_the_credentials(registry, tmp_path, monkeypatch, capsys):
    code = cli_export(registry, tmp_path, monkeypatch, auth_file(tmp_path, registry.host))
    printed = capsys.readouterr()
    assert code == 0
    stored = (tmp_path / "out" / "image.json").read_text()
    assert json.loads(stored)["pushed"] is True
    for form in (PASSWORD, base64.b64encode(f"robot:{PASSWORD}".encode()).decode()):
        assert form not in printed.out + printed.err and form not in stored


# -- references --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python:3.11-slim", ("docker.io", "library/python", "3.11-slim", None)),
        ("docker.io/team/app", ("docker.io", "team/app", None, None)),
        ("localhost:5000/team/app:v1", ("localhost:5000", "team/app", "v1", None)),
        (
            "europe-docker.pkg.dev/p/r/stages@sha256:" + "a" * 64,
            ("europe-docker.pkg.dev", "p/r/stages", None, "sha256:" + "a" * 64),
        ),
        ("172.18.0.2:5000/stages:abc@sha256:" + "b" * 64, ("172.18.0.2:5000", "stages", "abc", "sha256:" + "b" * 64)),
    ],
)
def test_image_references_are_split_as_docker_does(text, expected):
    reference = parse_reference(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == expected


# -- a real registry ---------------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_push_onto_a_real_stage_image_in_a_real_registry(tmp_path):
    """EXPORT_TEST_BASE (an image in a real registry, e.g. the stage image the e2e run pushed to the kind registry)
    and EXPORT_TEST_REPO (where to push); REGISTRY_AUTH_FILE when the registry wants credentials."""
    import os

    from issue_titles.registry import RegistryClient

    base, target = os.environ.get("EXPORT_TEST_BASE"), os.environ.get("EXPORT_TEST_REPO")
    if not (base and target):
        pytest.skip("set EXPORT_TEST_BASE and EXPORT_TEST_REPO (and REGISTRY_AUTH_FILE if needed) to push for real")
    bundle = make_bundle(tmp_path / "bundle", base)
    env = {
        "KUBERNETES_SERVICE_HOST": "real",
        "PACH_JOB_ID": JOB,
        **{key: os.environ[key] for key in ("REGISTRY_AUTH_FILE",) if key in os.environ},
    }
    record = run_export(bundle, tmp_path / "out", target, env=env)
    reference = parse_reference(record["image"])
    credentials = load_credentials(Path(env["REGISTRY_AUTH_FILE"])) if "REGISTRY_AUTH_FILE" in env else {}
    client = RegistryClient(
        reference.registry, credentials.get(reference.registry), scopes=[f"repository:{reference.repository}:pull"]
    )
    body, _, digest = client.get_manifest(reference.repository, JOB)
    assert digest == record["digest"]
    assert json.loads(body)["layers"][-1]["digest"] == record["layer"]["digest"]
